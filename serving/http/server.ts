/**
 * The HTTP/JSON API's server: the express app (app.ts) on a loopback port, beside the gRPC server of the same
 * process and over the same RecommenderCore. Like the gRPC server it binds loopback only (anything else is refused):
 * nothing here authenticates a caller. close() drains: it stops accepting connections, GET /readyz turns 503, requests
 * in flight are answered (on a connection that then closes), and whatever is still open after the grace is cut.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { messageOf } from '../errors';
import type { RecommenderCore, ServiceHooks } from '../recommender-core';
import { HOST, isLoopbackHost } from '../server';
import { DRAIN_GRACE_MS } from '../shutdown-budget';
import { httpApi } from './app';

/** `recsys serve --http-port`'s default: the usual port of a local HTTP API. */
export const DEFAULT_HTTP_PORT = 8080;

export interface HttpServerOptions {
  /** What answers (the pool, traffic policy, hooks, online store): the gRPC server's own. */
  core: RecommenderCore;
  /** 0 picks a free port. */
  port: number;
  /** A loopback address (default 127.0.0.1); anything else is refused. */
  host?: string;
  /** The core's hooks, so that bodies refused before reaching the core are counted too (app.ts). */
  hooks?: Pick<ServiceHooks, 'onError'>;
  /** The largest request body in bytes (default 1 MiB). */
  bodyLimitBytes?: number;
}

export interface HttpServer {
  port: number;
  /** http://host:port, without a trailing slash. */
  url: string;
  /** Drains (see the module comment) within `graceMs`; idempotent, every call returns the same promise. */
  close(graceMs?: number): Promise<void>;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const host = opts.host ?? HOST;
  if (!isLoopbackHost(host))
    throw new Error(
      `refusing to serve HTTP on ${JSON.stringify(host)}: not a loopback address (127.0.0.0/8, ::1, localhost); ` +
        'the serving tier is reachable from this machine only',
    );
  const api = httpApi({ core: opts.core, hooks: opts.hooks, bodyLimitBytes: opts.bodyLimitBytes });
  const server = http.createServer(api.app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new Error(`cannot serve HTTP on ${host}:${opts.port} (see --http-port): ${messageOf(err)}`)),
    );
    server.listen(opts.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  const close = (graceMs = DRAIN_GRACE_MS): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      api.drain();
      // Stops listening and closes idle keep-alive connections; busy ones close after their response (app.ts sets
      // `connection: close` while draining).
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      server.closeIdleConnections();
    });
    return closing;
  };
  return { port, url: `http://${net.isIPv6(host) ? `[${host}]` : host}:${port}`, close };
}
