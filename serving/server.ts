/**
 * The gRPC server of the serving tier: recsys.v1.Recommender, the standard grpc.health.v1 health service (SERVING
 * only while a model version is loaded, so load balancers and `grpc_health_probe` wait for a checked model), and
 * server reflection (grpcurl, grpcui, Postman work without the .proto), and optionally recsys.v1.Admin (load and
 * unload versions, set the traffic policy). Binds loopback only (a non-loopback host is refused): the Recommender and
 * health services are open to this machine, and the admin service on the same port also needs the admin token.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { adminToken } from '../lib/admin-token';
import { adminHandlers, requireAdminToken } from './admin-service';
import type { FaultTable } from './faults';
import type { ModelPool } from './model-pool';
import { RECOMMENDER_SERVICE, packageDefinition, recsysV1 } from './proto';
import type { ServiceHooks } from './recommender-core';
import { RecommenderCore } from './recommender-core';
import { recommenderHandlers } from './service';

export const HOST = '127.0.0.1';

import { DRAIN_GRACE_MS } from './shutdown-budget';

/** 127.0.0.0/8, ::1 and `localhost`: the hosts a server may bind. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

export interface ServerOptions {
  /** The versions that serve and the traffic policy (a ModelPool). */
  slot: ModelPool;
  /** 0 picks a free port. */
  port: number;
  /** A loopback address (default 127.0.0.1); anything else is refused. */
  host?: string;
  /** What answers Recommender calls (the pool, hooks, faults and online store); shared with the HTTP API. */
  core?: RecommenderCore;
  hooks?: ServiceHooks;
  /** Also serve recsys.v1.Admin, to callers that send the admin token. */
  admin?: boolean;
  /** The token Admin calls must carry; default: lib/admin-token.ts' (RECSYS_ADMIN_TOKEN or the stack dir's file). */
  adminToken?: string;
  /**
   * Faults injected on purpose per version (demonstrations, tests): present only when the server was started with
   * --allow-faults; Admin.SetFault is refused (FAILED_PRECONDITION) without it.
   */
  faults?: FaultTable;
  /**
   * Closed in this order by shutdown(), after the last call has been answered and the model released: the request log
   * (so it flushes every record the hooks appended) and the metrics endpoint.
   */
  closeAfterDrain?: readonly { close(): Promise<unknown> }[];
}

export interface RunningServer {
  server: grpc.Server;
  port: number;
  address: string;
  health: HealthImplementation;
  /**
   * Stops taking new calls (health turns NOT_SERVING first), lets in-flight calls finish within `graceMs`, cancels
   * whatever is left after that, then releases the model and closes `closeAfterDrain` (flushing the request log).
   */
  shutdown(graceMs?: number): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? HOST;
  // Neither the Recommender nor the health service authenticates anyone: both are for this machine only.
  if (!isLoopbackHost(host))
    throw new Error(
      `refusing to serve on ${JSON.stringify(host)}: not a loopback address (127.0.0.0/8, ::1, localhost); ` +
        'the serving tier is reachable from this machine only',
    );
  const server = new grpc.Server();
  const core = opts.core ?? new RecommenderCore(opts.slot, { hooks: opts.hooks, faults: opts.faults });
  server.addService(recsysV1().Recommender.service, recommenderHandlers(core));
  if (opts.admin) {
    const token = opts.adminToken ?? adminToken();
    server.addService(recsysV1().Admin.service, requireAdminToken(adminHandlers(opts.slot, opts.faults), token));
  }

  // '' is the whole server, as health clients ask by default; the service name for clients that ask per service.
  const health = new HealthImplementation({ '': 'NOT_SERVING', [RECOMMENDER_SERVICE]: 'NOT_SERVING' });
  const setHealth = (s: ServingStatus) => {
    health.setStatus('', s);
    health.setStatus(RECOMMENDER_SERVICE, s);
  };
  setHealth(opts.slot.active ? 'SERVING' : 'NOT_SERVING');
  opts.slot.onChange((active) => setHealth(active ? 'SERVING' : 'NOT_SERVING'));
  health.addToServer(server);
  new ReflectionService(packageDefinition()).addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${hostPort(host, opts.port)}`, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = DRAIN_GRACE_MS): Promise<void> => {
    stopping ??= (async () => {
      setHealth('NOT_SERVING');
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await opts.slot.close();
      for (const c of opts.closeAfterDrain ?? []) await c.close();
    })();
    return stopping;
  };
  return { server, port, address: hostPort(host, port), health, shutdown };
}

const hostPort = (host: string, port: number) => (net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);
