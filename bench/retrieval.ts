/**
 * Retrieval past exact top-K: per single query, p50/p99 latency and recall@10 against exact search, at 100k and 1M
 * items (d = 64) and on the trained models' own embeddings, for
 *   (a) exact in-graph top-K: an ONNX graph MatMul(user, item_matrix^T) + TopK in onnxruntime-node, one thread, as
 *       serving runs the retrieval graph (bench/retrieval_graph.py; the user tower and history mask left out). Brute
 *       force in float32: the reference every recall is measured against;
 *   (b) exactTopK in TypeScript (serving/retrieval), the index's fallback; its recall is its agreement with (a).
 *       Above 200k items it is timed on the first 200 queries only (~0.3 s each on this machine);
 *   (c) the HNSW index (usearch, serving/retrieval), one row per graph kind (inner-product and angular
 *       neighbourhoods, both searched by inner product), its depth tuned as the export tunes it (the smallest with
 *       recall@10 >= 0.99, here on 500 other queries), with its build time, the chosen depth and the index's size;
 *       a kind that no depth up to 1024 brings to 0.99 is marked REJECTED (the version would serve exact search)
 *       and measured at depth 1024. Each index is built once per item set and tuned for each kind of user. Above
 *       200k items only the inner-product graph is built unless the command line names the graphs (an angular
 *       build at 1M took ~20 min on two busy cores).
 * Synthetic embeddings have latent structure calibrated on the trained models (bench/retrieval-sets.ts); the
 * trained ones come from bench/quality.ts's cached MovieLens-100K models (1,682 items only: there every method is
 * fast, the rows show the index's recall on real embeddings). Figures are printed, never asserted; other work on
 * the machine inflates the latencies (the load average is printed).
 *   npx tsx bench/retrieval.ts [ITEMS...] [mf-like] [tower-like] [flat] [ip] [angular] [trained]
 * No argument: the mf-like and tower-like users at 100k and 1M items, and the trained rows.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { config } from '../lib/config';
import { exactTopK } from '../serving/retrieval/exact-top-k';
import { HNSW_GRAPHS } from '../lib/ann-manifest';
import { DEFAULT_HNSW, buildHnsw, type HnswGraph } from '../serving/retrieval/hnsw';
import { recallAtK } from '../serving/retrieval/recall';
import { DEFAULT_CANDIDATES, tuneExpansion } from '../serving/retrieval/tune';
import { machine } from './common';
import {
  DEFAULT_STYLES,
  STYLE_NAMES,
  isStyle,
  itemShape,
  syntheticSets,
  trainedSets,
  userShape,
  type ItemSet,
  type Users,
} from './retrieval-sets';

const DIMS = 64;
const K = 10;
const QUERIES = 1000;
const TUNE_QUERIES = 500;
const WARMUP = 20;
/** Above this many items: exactTopK timed on TS_QUERIES_LARGE queries, and only LARGE_GRAPHS built by default. */
const LARGE = 200_000;
const TS_QUERIES_LARGE = 200;
/** The cheaper build (an angular build costs ~3x: ~20 min at 1M on two busy cores); 'angular' on the command line. */
const LARGE_GRAPHS: HnswGraph[] = ['ip'];
/** Queries per run when the exact graph answers the tuning queries in batches (a batch's score matrix: b x n). */
const REFERENCE_BATCH = 25;
const TRAINED_FAMILIES = ['two_tower', 'mf'];
const DIR = path.join(process.env.RECSYS_CACHE || path.join(os.homedir(), '.cache', 'recsys'), 'bench', 'retrieval');

interface Row {
  set: string;
  method: string;
  p50: number;
  p99: number;
  recall: number;
  note: string;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const elapsedMs = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
const rowOf = (m: Float32Array, dims: number, i: number) => m.subarray(i * dims, (i + 1) * dims);
const log = (line: string) => console.log(`  ${line}`);
/** Other work on the machine inflates every latency here: printed with the figures. */
const loadAverage = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' / ');

/** Per query: p50 and p99 of `run` (ms) and the k keys it returned, row-major. */
async function timed(
  queries: Float32Array,
  dims: number,
  run: (q: Float32Array) => BigInt64Array | Promise<BigInt64Array>,
): Promise<{ p50: number; p99: number; keys: BigInt64Array }> {
  const b = queries.length / dims;
  for (let i = 0; i < Math.min(WARMUP, b); i++) await run(rowOf(queries, dims, i));
  const keys = new BigInt64Array(b * K);
  const ms: number[] = [];
  for (let i = 0; i < b; i++) {
    const start = process.hrtime.bigint();
    const got = await run(rowOf(queries, dims, i));
    ms.push(elapsedMs(start));
    keys.set(got.subarray(0, K), i * K);
  }
  ms.sort((x, y) => x - y);
  return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), keys };
}

/** The exact top-K graph of the items (cached beside them: rebuilt only when the items file is newer). */
function graphOf(set: ItemSet): string {
  const out = execFileSync(
    config().python,
    [
      path.join(__dirname, 'retrieval_graph.py'),
      set.itemsFile,
      String(set.dims),
      String(K),
      `${set.itemsFile}.top${K}.onnx`,
    ],
    {
      cwd: path.resolve(__dirname, '..'),
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return (JSON.parse(out.toString().trim().split('\n').at(-1)!) as { path: string }).path;
}

async function graphTopK(session: ort.InferenceSession, queries: Float32Array, dims: number): Promise<BigInt64Array> {
  const out = await session.run({ user: new ort.Tensor('float32', queries, [queries.length / dims, dims]) });
  return out.items!.data as BigInt64Array;
}

/** What the exact graph answers, the reference for one kind of user. */
interface Reference {
  users: Users;
  keys: BigInt64Array;
  tuneKeys: BigInt64Array;
}

/** Rows (a) and (b) for one kind of user, and the reference the index rows are measured against. */
async function exactRows(
  set: ItemSet,
  users: Users,
  session: ort.InferenceSession,
): Promise<{ rows: Row[]; ref: Reference }> {
  const { dims, items } = set;
  const n = items.length / dims;
  const b = users.queries.length / dims;
  console.log(
    `\n${users.name}: ${n} items, d ${dims}, ${b} queries, the depth tuned on ${users.tuneQueries.length / dims} others`,
  );
  log(userShape(items, dims, users.queries));
  const graph = await timed(users.queries, dims, (q) => graphTopK(session, q, dims));
  log(`exact graph: p50 ${graph.p50.toFixed(3)} ms`);
  const tuneKeys = new BigInt64Array((users.tuneQueries.length / dims) * K);
  for (let i = 0; i < users.tuneQueries.length / dims; i += REFERENCE_BATCH)
    tuneKeys.set(
      await graphTopK(session, users.tuneQueries.subarray(i * dims, (i + REFERENCE_BATCH) * dims), dims),
      i * K,
    );
  const tsQueries = n > LARGE ? TS_QUERIES_LARGE : b;
  const ts = await timed(users.queries.subarray(0, tsQueries * dims), dims, (q) => exactTopK(items, dims, q, K).keys);
  log(`exactTopK: p50 ${ts.p50.toFixed(3)} ms`);
  return {
    ref: { users, keys: graph.keys, tuneKeys },
    rows: [
      {
        set: users.name,
        method: 'exact graph MatMul+TopK (ORT)',
        ...graph,
        recall: 1,
        note: 'the reference (brute force)',
      },
      {
        set: users.name,
        method: 'exactTopK (TS)',
        ...ts,
        recall: recallAtK(ts.keys, graph.keys.subarray(0, tsQueries * K), tsQueries, K),
        note: tsQueries < b ? `timed on ${tsQueries} queries` : '',
      },
    ],
  };
}

/** Row (c) for each kind of user: one index of this graph kind, its depth tuned per kind of user. */
async function indexRows(set: ItemSet, graph: HnswGraph, refs: Reference[]): Promise<Row[]> {
  const { dims, items } = set;
  const threads = os.availableParallelism();
  const start = process.hrtime.bigint();
  const index = buildHnsw(items, dims, DEFAULT_HNSW, { threads, graph });
  const buildS = elapsedMs(start) / 1000;
  const file = path.join(DIR, `${set.name}.${graph}.usearch`);
  await index.save(file);
  const mib = (await fs.stat(file)).size / 2 ** 20;
  await fs.rm(file);
  console.log(
    `\n${set.name}: HNSW ${graph} graph ${JSON.stringify(DEFAULT_HNSW)} built in ${buildS.toFixed(1)} s on ${threads} threads, ${mib.toFixed(1)} MiB`,
  );
  const rows: Row[] = [];
  for (const { users, keys, tuneKeys } of refs) {
    const curve: string[] = [];
    const tuned = tuneExpansion(index, items, users.tuneQueries, {
      k: K,
      exact: tuneKeys,
      onTry: (t) => curve.push(`${t.expansionSearch}: ${t.recall.toFixed(4)}`),
    });
    log(`${users.name}: recall@${K} on the tuning queries by depth: ${curve.join(', ')}`);
    // Rejected: the version would not serve it; measured at the deepest candidate to show how far it was.
    if (!tuned) index.setExpansionSearch(DEFAULT_CANDIDATES.at(-1)!);
    const hnsw = await timed(users.queries, dims, (q) => index.search(q, K).keys);
    const depth = tuned
      ? `depth ${tuned.expansionSearch}`
      : `REJECTED (< 0.99 at every depth; at ${index.params.expansionSearch})`;
    rows.push({
      set: users.name,
      method: `HNSW ${graph} graph`,
      ...hnsw,
      recall: recallAtK(hnsw.keys, keys, users.queries.length / dims, K),
      note: `${depth}, build ${buildS.toFixed(1)} s, ${mib.toFixed(1)} MiB`,
    });
  }
  return rows;
}

async function measure(set: ItemSet, graphs: readonly HnswGraph[] | undefined): Promise<Row[]> {
  const n = set.items.length / set.dims;
  console.log(`\n== ${set.name}: ${itemShape(set.items, set.dims)}`);
  const start = process.hrtime.bigint();
  const graph = graphOf(set);
  const session = await ort.InferenceSession.create(graph, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  log(`exact graph ${graph} ready in ${(elapsedMs(start) / 1000).toFixed(1)} s`);
  const byUsers = new Map<string, Row[]>();
  const refs: Reference[] = [];
  for (const users of set.users) {
    const { rows, ref } = await exactRows(set, users, session);
    byUsers.set(users.name, rows);
    refs.push(ref);
  }
  await session.release();
  for (const graphKind of graphs ?? (n > LARGE ? LARGE_GRAPHS : HNSW_GRAPHS))
    for (const row of await indexRows(set, graphKind, refs)) byUsers.get(row.set)!.push(row);
  return [...byUsers.values()].flat();
}

function print(rows: Row[]): void {
  const header = ['set', 'method', 'p50 ms', 'p99 ms', `recall@${K}`, ''];
  const cells = rows.map((r) => [r.set, r.method, r.p50.toFixed(3), r.p99.toFixed(3), r.recall.toFixed(4), r.note]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  for (const line of [header, ...cells])
    console.log(
      line
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const words = args.filter((a) => !/^\d+$/.test(a));
  const isGraph = (w: string): w is HnswGraph => (HNSW_GRAPHS as readonly string[]).includes(w);
  const unknown = words.find((w) => w !== 'trained' && !isStyle(w) && !isGraph(w));
  if (unknown !== undefined)
    throw new Error(
      `bench/retrieval.ts: item counts, styles (${STYLE_NAMES.join(', ')}), graphs (ip, angular) or 'trained', got ${unknown}`,
    );
  const numbers = args.filter((a) => /^\d+$/.test(a)).map(Number);
  const styles = words.filter(isStyle);
  const named = words.filter(isGraph);
  const graphs = named.length ? named : undefined;
  // Item counts and styles choose synthetic sets (default: the default styles at 100k and 1M); 'trained' alone, none.
  const sizes = numbers.length ? numbers : styles.length || !args.length ? [100_000, 1_000_000] : [];
  await fs.mkdir(DIR, { recursive: true });
  console.log(`Retrieval: single queries, k ${K}, ${machine()}, load average ${loadAverage()}`);
  const rows: Row[] = [];
  const started = process.hrtime.bigint();
  for (const n of sizes)
    for (const set of await syntheticSets(DIR, n, DIMS, styles.length ? styles : DEFAULT_STYLES, QUERIES, TUNE_QUERIES))
      rows.push(...(await measure(set, graphs)));
  if (!args.length || words.includes('trained'))
    for (const set of await trainedSets(DIR, TRAINED_FAMILIES, QUERIES, TUNE_QUERIES))
      rows.push(...(await measure(set, graphs)));
  console.log(
    `\nRetrieval table (${(elapsedMs(started) / 1000).toFixed(0)} s in all; load average now ${loadAverage()})`,
  );
  print(rows);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
