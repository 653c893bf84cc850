/** Helpers for integration tests: they run against the real local stack that `make test` starts. */
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { config } from '../../lib/config';
import { nativeConnectionOptions, temporalConnectionOptions } from '../../lib/temporal-connection';

/** Fails (never skips) with a clear message when a server of the stack is not reachable. */
export async function assertStackUp(): Promise<void> {
  const cfg = config();
  const problems: string[] = [];
  const mlflow = await fetch(`${cfg.mlflowUrl}/health`).catch(() => undefined);
  if (!mlflow?.ok) problems.push(`MLflow at ${cfg.mlflowUrl}`);
  // The local stack's store; a store the AWS SDK resolves (RECSYS_S3_ENDPOINT=aws) is not the local stack's.
  const s3 = cfg.s3Endpoint !== undefined && (await fetch(cfg.s3Endpoint).catch(() => undefined));
  if (!s3) problems.push(`object store at ${cfg.s3Endpoint ?? 'AWS S3 (RECSYS_S3_ENDPOINT=aws)'}`);
  try {
    const conn = await Connection.connect({ ...temporalConnectionOptions(), connectTimeout: 3000 });
    await conn.close();
  } catch {
    problems.push(`Temporal at ${cfg.temporalAddress}`);
  }
  const redis = await redisPing(cfg.redisUrl);
  if (!redis) problems.push(`Redis at ${cfg.redisUrl}`);
  const prometheus = await fetch(`${cfg.prometheusUrl}/-/ready`).catch(() => undefined);
  if (!prometheus?.ok) problems.push(`Prometheus at ${cfg.prometheusUrl}`);
  if (problems.length > 0)
    throw new Error(
      `integration tests need the local stack; not reachable: ${problems.join(', ')}. Run: make stack-up`,
    );
}

/** True when Redis answers PING (a raw RESP exchange: no client library needed to ask). */
async function redisPing(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  const net = await import('node:net');
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || 6379) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

export const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

export interface TemporalTestConnections {
  /** For clients: start workflows, query, cancel. */
  client: Client;
  /** For in-process workers. */
  native: NativeConnection;
}

/** Opens client and worker connections to the stack's Temporal in beforeAll and closes them in afterAll. */
export function useTemporal(): TemporalTestConnections {
  const conns = {} as TemporalTestConnections;
  let connection: Connection | undefined;
  beforeAll(async () => {
    connection = await Connection.connect(temporalConnectionOptions());
    conns.native = await NativeConnection.connect(nativeConnectionOptions());
    conns.client = new Client({ connection, namespace: config().temporalNamespace });
  });
  afterAll(async () => {
    await connection?.close();
    await conns.native?.close();
  });
  return conns;
}
