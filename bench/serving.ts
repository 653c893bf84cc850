/**
 * Serving benchmark: QPS, p50 and p99 of Recommend over loopback, for a ~4k-item (ML-1M-sized) and a 100k-item
 * catalogue, float and int8, at concurrency 1, 16 and 64. In the same run, three references: grpc-js with an empty
 * handler (the most a grpc-js server does on this machine), the Python peer (grpcio + onnxruntime, same proto and
 * graph) and the graph called in-process with no network (the ceiling). Figures are printed, never asserted.
 *   bash infra/install-bench.sh && npx tsx bench/serving.ts [seconds per cell = 5]
 *
 * Every server and every load runs in its own process; the load generator is ours (bench/serving-load.ts).
 */
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { config } from '../lib/config';
import { recommend, recommenderClient } from '../serving/client';
import { OnnxRanker } from '../serving/onnx-ranker';
import { machine } from './common';
import { benchRequests, benchVersion, K, syntheticCatalog, type BenchGraph } from './serving-fixture';
import type { LoadResult } from './serving-load';
import { runLoad, startPythonPeer, startTsServer, type ServerProcess } from './serving-procs';
import { printTable, type Row } from './serving-table';

const CATALOGUES = [3706, 100_000]; // ML-1M's item count, and a larger shop's
const CONCURRENCY = [1, 16, 64];
const WARMUP_S = 1;

const cache = process.env.RECSYS_CACHE || path.join(os.homedir(), '.cache', 'recsys');
const benchPython = path.join(process.env.RECSYS_BENCH_VENV || path.join(cache, 'bench-venv'), 'bin', 'python');

/** Builds (once, cached) the graphs with the platform's venv, which has torch; see bench/serving_models.py. */
function graphs(): BenchGraph[] {
  const out = execFileSync(
    config().python,
    [path.join(__dirname, 'serving_models.py'), path.join(cache, 'bench', 'serving-models'), ...CATALOGUES.map(String)],
    {
      cwd: path.resolve(__dirname, '..'),
      env: { ...process.env, OMP_NUM_THREADS: '1', PYTHONPATH: '.' },
      // The exporter's progress and warnings go nowhere unless it fails (then execFileSync's error carries them).
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return out
    .toString()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as BenchGraph);
}

/** One real call through the normal client: the server must answer with the model's items, not a fallback. */
async function check(server: ServerProcess, nItems: number, who: string): Promise<void> {
  const client = recommenderClient(server.address);
  try {
    const res = await recommend(client, benchRequests(nItems)[0]!);
    if (res.items.length !== K || res.fallback)
      throw new Error(`${who}: ${res.items.length} items, fallback ${res.fallback}`);
  } finally {
    client.close();
  }
}

async function measure(server: ServerProcess, nItems: number, seconds: number): Promise<Map<number, LoadResult>> {
  const results = new Map<number, LoadResult>();
  for (const concurrency of CONCURRENCY)
    results.set(
      concurrency,
      await runLoad({ address: server.address, concurrency, warmupS: WARMUP_S, seconds, nItems }),
    );
  return results;
}

async function withServer<T>(start: Promise<ServerProcess>, use: (s: ServerProcess) => Promise<T>): Promise<T> {
  const server = await start;
  try {
    return await use(server);
  } finally {
    await server.stop();
  }
}

/** The graph alone, one call at a time, in this process: what a core does when there is no gRPC at all. */
async function inProcess(g: BenchGraph, seconds: number): Promise<LoadResult> {
  const ranker = await OnnxRanker.open('in-process', g.path, benchVersion(g));
  const catalog = syntheticCatalog(g.n_items);
  const histories = benchRequests(g.n_items).map((r) => Int32Array.from(r.history, (h) => catalog.indexOf(h.item_id)));
  let i = 0;
  const once = async () => {
    const h = histories[i++ % histories.length]!;
    await ranker.rank(h, h.length);
  };
  const warmEnd = performance.now() + WARMUP_S * 1000;
  while (performance.now() < warmEnd) await once();
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  for (let t = performance.now(); t < end;) {
    await once();
    const now = performance.now();
    lat.push(now - t);
    t = now;
  }
  await ranker.dispose();
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return { calls: lat.length, errors: 0, qps: lat.length / seconds, p50: q(0.5), p99: q(0.99) };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const t0 = performance.now();
  const all = graphs();
  const empty = await withServer(startTsServer('empty'), (s) => measure(s, CATALOGUES[0]!, seconds));
  const rows: Row[] = [];
  for (const g of all) {
    const label = `${g.n_items} ${g.precision}`;
    const ours = await withServer(startTsServer('ours', JSON.stringify(g)), async (s) => {
      await check(s, g.n_items, `ours ${label}`);
      return measure(s, g.n_items, seconds);
    });
    const python = await withServer(startPythonPeer(benchPython, g.path, g.n_items), async (s) => {
      await check(s, g.n_items, `python peer ${label}`);
      return measure(s, g.n_items, seconds);
    });
    rows.push({ graph: g, ours, python, inProcess: await inProcess(g, seconds) });
  }
  printTable({ machine: machine(), seconds, warmupS: WARMUP_S, concurrency: CONCURRENCY, empty, rows });
  console.log(`  total run time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
