/**
 * A server under test, in its own process so that it has a core of its own and the load generator's work is not
 * counted against it. Started by bench/serving.ts:
 *   node --import tsx bench/serving-server.ts ours '<BenchGraph JSON>'   the real server (startServer + ModelPool)
 *   node --import tsx bench/serving-server.ts empty                      grpc-js, same service, handler does nothing
 * Prints {"port":N} once it accepts calls; exits when its stdin closes (the benchmark ended or died) or on SIGTERM.
 */
import * as grpc from '@grpc/grpc-js';
import { ModelPool } from '../serving/model-pool';
import { recsysV1 } from '../serving/proto';
import { HOST, startServer } from '../serving/server';
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

async function main(): Promise<void> {
  const [kind, graph] = process.argv.slice(2);
  const s = kind === 'ours' ? await ours(JSON.parse(graph ?? '') as BenchGraph) : await empty();
  const exit = () => void s.stop().finally(() => process.exit(0));
  process.stdin.on('end', exit).resume();
  process.on('SIGTERM', exit);
  process.stdout.write(`${JSON.stringify({ port: s.port })}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
