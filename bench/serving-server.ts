/**
 * A server under test, in its own process so that it has a core of its own and the load generator's work is not
 * counted against it. Started by bench/serving.ts and bench/online-path.ts:
 *   node --import tsx bench/serving-server.ts ours '<BenchGraph JSON>'   the real server (startServer + ModelPool)
 *   node --import tsx bench/serving-server.ts empty                      grpc-js, same service, handler does nothing
 *   node --import tsx bench/serving-server.ts online '<BenchGraph JSON>' <redis URL>   gRPC + HTTP over one core with
 *                                                                        the Redis online store (online-servers.ts)
 *   node --import tsx bench/serving-server.ts http-empty                 express 5, same JSON parser, answers {}
 * Prints {"port":N} ({"port":N,"httpPort":M} for online) once it accepts calls; exits when its stdin closes (the
 * benchmark ended or died) or on SIGTERM. The online server answers a line `stats` on stdin with its counters.
 */
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { ModelPool } from '../serving/model-pool';
import { recsysV1 } from '../serving/proto';
import { HOST, startServer } from '../serving/server';
import { emptyHttpServer, onlineServer, type BenchServer } from './online-servers';
import { localLoader, type BenchGraph } from './serving-fixture';

async function ours(graph: BenchGraph): Promise<{ port: number; stop: () => Promise<void> }> {
  const loader = localLoader(graph);
  const slot = new ModelPool(loader);
  const version = await loader.resolve({ name: 'bench', alias: 'champion' });
  await slot.load({ name: version.name, version: version.version });
  const running = await startServer({ slot, port: 0 });
  return { port: running.port, stop: () => running.shutdown(1000) };
}

async function empty(): Promise<{ port: number; stop: () => Promise<void> }> {
  const server = new grpc.Server();
  // The request is still decoded (the same proto-loader codec as ours); the response is empty.
  server.addService(recsysV1().Recommender.service, {
    Recommend: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, {}),
    Feedback: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, {}),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${HOST}:0`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { port, stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

function start(
  kind: string | undefined,
  graph: string | undefined,
  redisUrl: string | undefined,
): Promise<BenchServer> {
  const parsed = () => JSON.parse(graph ?? '') as BenchGraph;
  if (kind === 'ours') return ours(parsed());
  if (kind === 'empty') return empty();
  if (kind === 'online') return onlineServer(parsed(), redisUrl ?? '');
  if (kind === 'http-empty') return emptyHttpServer();
  throw new Error(`unknown server kind ${JSON.stringify(kind)}: ours, empty, online or http-empty`);
}

async function main(): Promise<void> {
  const [kind, graph, redisUrl] = process.argv.slice(2);
  const s = await start(kind, graph, redisUrl);
  const exit = () => void s.stop().finally(() => process.exit(0));
  process.stdin.on('end', exit).resume();
  process.on('SIGTERM', exit);
  process.stdout.write(`${JSON.stringify({ port: s.port, httpPort: s.httpPort })}\n`);
  const stats = s.stats;
  if (stats)
    createInterface({ input: process.stdin }).on('line', (line) => {
      if (line === 'stats') process.stdout.write(`${JSON.stringify(stats())}\n`);
    });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
