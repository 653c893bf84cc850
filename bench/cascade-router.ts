/**
 * Cascade and router: quality against p50/p99 latency and the expensive path's share, on the same requests. The
 * cascade family (recall → DIN rank → RankNet re-rank) is trained on MovieLens-100K's time split (bench/quality.ts's
 * dataset and training cache), exported to its three stage graphs, and served in-process by serving's CascadeRanker
 * exactly as `recsys serve` does; the requests are the warm test users (history before the test window), replayed
 * open-loop at a fixed rate so that the router's budget (requests/s) means what it means in production. Modes:
 * cheap-only (the recall stage alone), cascade-only (every request through all stages), and routed at three budgets.
 *   npx tsx bench/cascade-router.ts <path to ml-100k.inter>
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runPython } from '../activities/python-process';
import { config } from '../lib/config';
import { CASCADE_STAGES, type CascadeManifest } from '../lib/cascade-manifest';
import { CascadeRanker } from '../serving/cascade-ranker';
import { OnnxRanker } from '../serving/onnx-ranker';
import { createRouter } from '../serving/router';
import { routerSettings, type RouterConfigInput } from '../serving/router-config';
import { StageSession } from '../serving/stage-session';
import { machine } from './common';
import { FAMILIES, benchDatasets, trainCached } from './quality';

const K = 10;
/** Offered load: requests/s, replayed open-loop (each request at its own start time, whatever the previous took). */
const OFFERED_QPS = 100;
const BUDGETS = [10, 30, 60];
/** The quality table's cascade (same config: its trained model is reused from bench/quality.ts's cache). */
const CASCADE_CONFIG = FAMILIES.find((f) => f.kind === 'cascade')!.config['MovieLens-100K']!;

interface Request {
  history: number[];
  relevant: number[];
}

function ndcgAt(items: BigInt64Array, excluded: Set<number>, relevant: Set<number>, k: number): number {
  let dcg = 0;
  let rank = 0;
  for (let j = 0; j < items.length && rank < k; j++) {
    const item = Number(items[j]);
    if (excluded.has(item)) continue;
    if (relevant.has(item)) dcg += 1 / Math.log2(rank + 2);
    rank++;
  }
  let ideal = 0;
  for (let r = 0; r < Math.min(k, relevant.size); r++) ideal += 1 / Math.log2(r + 2);
  return ideal > 0 ? dcg / ideal : 0;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function openCascade(exported: Record<string, unknown>, router: RouterConfigInput): Promise<CascadeRanker> {
  const stages = exported.stages as { name: string; path: string; top_k: number }[];
  const manifest: CascadeManifest = {
    kind: 'cascade',
    historyLen: exported.history_len as number,
    nItems: exported.n_items as number,
    stages: CASCADE_STAGES.map((name) => {
      const s = stages.find((x) => x.name === name)!;
      return { name, uri: `s3://bench/${name}.onnx`, sha256: '0'.repeat(64), bytes: 0, topK: s.top_k };
    }),
  };
  const file = (name: string) => stages.find((s) => s.name === name)!.path;
  const recall = await OnnxRanker.open('bench', file('recall'), {
    historyLen: manifest.historyLen,
    topK: manifest.stages[0]!.topK,
  });
  const rank = await StageSession.open('bench', 'rank', file('rank'), manifest.historyLen);
  const rerank = await StageSession.open('bench', 'rerank', file('rerank'), manifest.historyLen);
  return new CascadeRanker(recall, rank, rerank, manifest, createRouter(routerSettings(router)));
}

interface Row {
  mode: string;
  expensiveShare: number;
  ndcg: number;
  p50: number;
  p99: number;
}

/** Replays every request once at OFFERED_QPS through a cascade with this router; quality and latency. */
async function replay(label: string, ranker: CascadeRanker, requests: Request[]): Promise<Row> {
  const latencies: number[] = new Array<number>(requests.length);
  const ndcgs: number[] = new Array<number>(requests.length);
  let expensive = 0;
  const t0 = performance.now();
  await Promise.all(
    requests.map(async (r, i) => {
      const due = t0 + (i * 1000) / OFFERED_QPS;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      const start = performance.now();
      const out = await ranker.rank(Int32Array.from(r.history), r.history.length);
      latencies[i] = performance.now() - start;
      if (out.trace?.route === 'cascade') expensive++;
      ndcgs[i] = ndcgAt(out.items, new Set(r.history), new Set(r.relevant), K);
    }),
  );
  latencies.sort((a, b) => a - b);
  return {
    mode: label,
    expensiveShare: expensive / requests.length,
    ndcg: ndcgs.reduce((a, b) => a + b, 0) / ndcgs.length,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
  };
}

async function main(): Promise<void> {
  const inter = process.argv[2];
  if (!inter) throw new Error('usage: npx tsx bench/cascade-router.ts <path to ml-100k.inter>');
  const ds = (await benchDatasets(inter)).find((d) => d.label === 'MovieLens-100K')!;
  const trained = await trainCached(ds, CASCADE_CONFIG);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-cascade-'));
  try {
    const exported = await runPython({
      module: 'models.export',
      args: ['--model', trained.modelPath, '--out', path.join(dir, 'model.onnx'), '--top-k', String(K)],
    });
    const requestsFile = path.join(dir, 'requests.json');
    execFileSync(
      config().python,
      [path.join(__dirname, 'cascade_requests.py'), '--data-dir', ds.dir, '--out', requestsFile],
      {
        cwd: path.resolve(__dirname, '..'),
        env: { ...process.env, OMP_NUM_THREADS: '1' },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const { requests } = JSON.parse(await fs.readFile(requestsFile, 'utf8')) as { requests: Request[] };
    // Warm repetitions: the replay covers every request several times, so p99 rests on hundreds of samples.
    const replayed = Array.from({ length: 4 }, () => requests).flat();

    const modes: [string, RouterConfigInput][] = [
      ['cheap-only', { mode: 'always-cheap', budget: { ratePerSecond: 1 } }],
      ['cascade-only', { mode: 'always-cascade', budget: { ratePerSecond: 1 } }],
      ...BUDGETS.map((b): [string, RouterConfigInput] => [
        `routed, budget ${b}/s`,
        { budget: { ratePerSecond: b, burst: b } },
      ]),
    ];
    const rows: Row[] = [];
    for (const [label, router] of modes) {
      const ranker = await openCascade(exported, router);
      try {
        // Warm-up through every stage without touching the router, so its budget starts full.
        for (const r of requests.slice(0, 50)) await ranker.run(Int32Array.from(r.history), r.history.length, true);
        rows.push(await replay(label, ranker, replayed));
      } finally {
        await ranker.dispose();
      }
    }
    console.log(
      `\nCascade and router: ML-100K time split, ${requests.length} warm test users x 4 = ${replayed.length} requests`,
    );
    console.log(`offered ${OFFERED_QPS} requests/s open-loop, NDCG@${K} with the history excluded; ${machine()}`);
    console.log(
      `stages: ${JSON.stringify((exported.stages as { name: string; top_k: number }[]).map((s) => [s.name, s.top_k]))}; train ${trained.trainSeconds.toFixed(1)} s`,
    );
    console.log('| mode | expensive share | NDCG@10 | p50 ms | p99 ms |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows)
      console.log(
        `| ${r.mode} | ${(r.expensiveShare * 100).toFixed(1)}% | ${r.ndcg.toFixed(4)} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} |`,
      );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
