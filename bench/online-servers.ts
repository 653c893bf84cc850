/**
 * The servers of bench/online-path.ts, each run in its own process by bench/serving-server.ts:
 *   online      the serving tier as `recsys serve` wires it: one RecommenderCore (model pool, the Redis online store)
 *               behind both the gRPC server and the HTTP/JSON API, on two loopback ports. Like bench/serving.ts'
 *               `ours` it has no request log and no metrics; its only hooks count answers by history source, so the
 *               benchmark can check after each cell that every answer came from the history the cell claims.
 *   http-empty  the ceiling of the HTTP side: an express 5 app with the same express.json parser (same limit) and
 *               settings as the API, whose handler answers `{}`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { MAX_BODY_BYTES } from '../serving/http/schemas';
import { startHttpServer } from '../serving/http/server';
import { ModelPool } from '../serving/model-pool';
import { RecommenderCore, type ServiceHooks } from '../serving/recommender-core';
import { connectOnlineStore } from '../serving/redis-store';
import { HOST, startServer } from '../serving/server';
import { localLoader, type BenchGraph } from './serving-fixture';

/** What the online server counted since it started. */
export interface ServerStats {
  /** Recommend answers by history_source. */
  sources: Record<string, number>;
  /** Answers marked online_store_degraded (the store was asked and did not answer in time). */
  degraded: number;
  /** Calls answered with an error. */
  errors: number;
}

/** A server under test: its ports, how to stop it, and (the online server) its counters. */
export interface BenchServer {
  /** The gRPC port; for http-empty, its HTTP port. */
  port: number;
  httpPort?: number;
  stop(): Promise<void>;
  stats?: () => ServerStats;
}

export async function onlineServer(graph: BenchGraph, redisUrl: string): Promise<BenchServer> {
  const loader = localLoader(graph);
  const slot = new ModelPool(loader);
  const version = await loader.resolve({ name: 'bench', alias: 'champion' });
  await slot.load({ name: version.name, version: version.version });
  const store = await connectOnlineStore({
    url: redisUrl,
    // Only a lost connection is news here; it would show in the counters too (degraded answers).
    onConnectionChange: (state, detail) => {
      if (state === 'down') console.error(`online server: Redis ${redisUrl} down: ${detail}`);
    },
  });
  if (!store.connected) {
    await store.close();
    throw new Error(`online server: Redis at ${redisUrl} did not answer`);
  }
  const stats: ServerStats = { sources: {}, degraded: 0, errors: 0 };
  const hooks: ServiceHooks = {
    onRecommend(_req, res) {
      stats.sources[res.history_source] = (stats.sources[res.history_source] ?? 0) + 1;
      if (res.online_store_degraded) stats.degraded++;
    },
    onError() {
      stats.errors++;
    },
  };
  const core = new RecommenderCore(slot, { hooks, store });
  const grpcServer = await startServer({ slot, core, port: 0 });
  const httpServer = await startHttpServer({ core, hooks, port: 0 });
  return {
    port: grpcServer.port,
    httpPort: httpServer.port,
    stats: () => stats,
    async stop() {
      await httpServer.close(1000);
      await grpcServer.shutdown(1000);
      await store.close();
    },
  };
}

export async function emptyHttpServer(): Promise<BenchServer> {
  const app = express();
  // As serving/http/app.ts: no x-powered-by, no ETag, the same body parser on the route, the answer written directly.
  app.disable('x-powered-by');
  app.set('etag', false);
  const json = express.json({ limit: MAX_BODY_BYTES });
  const answer = (_req: express.Request, res: express.Response) => {
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end('{}');
  };
  app.post('/v1/recommend', json, answer);
  app.post('/v1/events', json, answer);
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
