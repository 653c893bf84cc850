/**
 * Cost of one drift window at 10k, 100k and 1M logged requests: seconds to summarise the window's chunks from local
 * files (fleet/logs/summarize.ts, DuckDB) and the peak resident memory while doing it; then, when the stack is up, the
 * 100k window from the real object store through the chunk cache, cold (download) and warm (every chunk reused).
 *   npx tsx bench/drift-window.ts [runs=3] [sizes=10000,100000,1000000]
 *
 * The chunks are what serving writes (sealChunks, 1,000 records per chunk as RequestLog's default batch): each answer
 * has 10 items with float32 scores, 20 history items, Zipf-distributed item ids over 3,706 items (ML-1M's catalogue),
 * users from 6,040 known ones plus 5% strangers, 2% fallbacks, a 5% canary version, and one feedback event per answer
 * (a click on 10% of them) arriving 0.5-30 s later.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ChunkCache } from '../fleet/logs/chunk-cache';
import {
  referenceFromStatistics,
  summarizeFiles,
  summarizeWindow,
  type DriftReference,
  type SummarizeProgress,
} from '../fleet/logs/summarize';
import { config } from '../lib/config';
import { objectStore } from '../lib/object-store';
import { sealChunks } from '../serving/log-chunks';
import type { LogEntry } from '../serving/log-records';
import { evaluateWindow } from '../lib/drift/evaluate';
import { parseDriftConfig } from '../lib/drift/config';
import { mergeCounts, type WindowSummary } from '../lib/drift/summary';
import { Rng } from '../tests/data/random';
import { benchName, machine, median } from './common';

const ITEMS = 3706;
const USERS = 6040;
const CHUNK_RECORDS = 1000;
const W0 = Date.UTC(2026, 0, 5, 10);
const WINDOW = { startMs: W0, endMs: W0 + 3_600_000 };
const GRACE_MS = 60_000;
const SIZES = [10_000, 100_000, 1_000_000];

/** Seeded uniform draws from the tests' generator, so every run writes the same traffic. */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

/** Zipf(1) over the catalogue: item of rank r has weight 1/r; ids are ranks shuffled, as in a real catalogue. */
function zipfSampler(random: () => number): () => string {
  const cdf = new Float64Array(ITEMS);
  let total = 0;
  for (let r = 0; r < ITEMS; r++) cdf[r] = total += 1 / (r + 1);
  const ids = Array.from({ length: ITEMS }, (_, i) => String(i + 1));
  const shuffle = rng(7);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(shuffle() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return () => {
    const u = random() * total;
    let lo = 0;
    let hi = ITEMS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return ids[lo]!;
  };
}

/** The training statistics the window is bucketed against: the same Zipf popularity, the known users. */
function benchReference(): DriftReference {
  const random = rng(11);
  const item = zipfSampler(random);
  const itemCounts: Record<string, number> = {};
  for (let i = 0; i < 1_000_000; i++) {
    const id = item();
    itemCounts[id] = (itemCounts[id] ?? 0) + 1;
  }
  const userCounts = Object.fromEntries(Array.from({ length: USERS }, (_, i) => [String(i + 1), 20]));
  return referenceFromStatistics('s3://recsys/datasets/bench-drift/v1/', 'v1', { itemCounts, userCounts });
}

/** Writes `requests` answers and their feedback as sealed chunks under `dir` (relative keys); returns the files. */
async function writeTraffic(dir: string, requests: number): Promise<{ files: string[]; bytes: number }> {
  const random = rng(requests);
  const item = zipfSampler(random);
  const files: string[] = [];
  let bytes = 0;
  let seq = 0;
  for (let start = 0; start < requests; start += CHUNK_RECORDS) {
    const entries: LogEntry[] = [];
    for (let i = start; i < Math.min(requests, start + CHUNK_RECORDS); i++) {
      const t = W0 + Math.floor((i / requests) * 3_600_000);
      const fallback = random() < 0.02;
      const items = Array.from({ length: 10 }, (_, k) => ({
        item_id: item(),
        score: Math.fround(fallback ? 0.05 / (k + 1) : 6 - 0.35 * k + random()),
      }));
      const requestId = randomUUID();
      const version = random() < 0.05 ? '4' : '3';
      entries.push({
        kind: 'recommend',
        record: {
          time_ms: t,
          request_id: requestId,
          user_id: random() < 0.05 ? `new-${i}` : String(1 + Math.floor(random() * USERS)),
          history_len: fallback ? 0 : 20 + Math.floor(random() * 80),
          history_items: fallback ? [] : Array.from({ length: 20 }, item),
          items,
          model_name: 'bench-drift',
          model_version: version,
          dataset_name: 'bench-drift',
          dataset_version: 'v1',
          latency_ms: 1 + random() * 4,
          fallback,
          fallback_reason: fallback ? 'FALLBACK_REASON_NO_HISTORY' : 'FALLBACK_REASON_UNSPECIFIED',
        },
      });
      const at = t + 500 + Math.floor(random() * 29_500);
      const click = random() < 0.1;
      entries.push({
        kind: 'feedback',
        record: {
          time_ms: at,
          request_id: requestId,
          user_id: '1',
          item_id: items[Math.floor(random() * 10)]!.item_id,
          event: click ? 'FEEDBACK_EVENT_CLICK' : 'FEEDBACK_EVENT_IMPRESSION',
          event_time_ms: at,
          value: 0,
          model_name: 'bench-drift',
          model_version: version,
        },
      });
    }
    for (const c of sealChunks(entries, { serverId: 'bench-1', env: 'production' }, () => seq++, Date.now())) {
      const file = path.join(dir, c.key);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, c.body);
      files.push(file);
      bytes += Buffer.byteLength(c.body);
    }
  }
  return { files, bytes };
}

/** Runs `work` while sampling the process's resident memory; returns its result, seconds and the peak RSS. */
async function measured<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number; peakRss: number }> {
  let peakRss = process.memoryUsage.rss();
  const timer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
  const t = performance.now();
  try {
    const value = await work();
    return { value, seconds: (performance.now() - t) / 1000, peakRss: Math.max(peakRss, process.memoryUsage.rss()) };
  } finally {
    clearInterval(timer);
  }
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function stackUp(): Promise<boolean> {
  const endpoint = config().s3Endpoint; // undefined: a store the AWS SDK resolves, not the local stack's
  return endpoint !== undefined && (await fetch(endpoint).catch(() => undefined)) !== undefined;
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const reference = benchReference();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-drift-'));
  console.log(`Drift window benchmark on ${machine()}`);
  console.log(`  one window of 1 h, grace ${GRACE_MS / 1000} s; ${CHUNK_RECORDS} records per chunk; ${runs} runs`);
  try {
    const sizes = process.argv[3] ? process.argv[3].split(',').map(Number) : SIZES;
    for (const n of sizes) {
      const dir = path.join(root, String(n));
      const gen = await measured(() => writeTraffic(dir, n));
      const { files, bytes } = gen.value;
      const recommendFiles = files.filter((f) => f.includes(`${path.sep}recommend${path.sep}`));
      const feedbackFiles = files.filter((f) => f.includes(`${path.sep}feedback${path.sep}`));
      const seconds: number[] = [];
      let peak = 0;
      let summary: WindowSummary | undefined;
      const before = process.memoryUsage.rss();
      for (let i = 0; i < runs; i++) {
        const m = await measured(() =>
          summarizeFiles({
            recommendFiles,
            feedbackFiles,
            window: WINDOW,
            graceMs: GRACE_MS,
            reference,
            model: 'bench-drift',
            env: 'production',
          }),
        );
        seconds.push(m.seconds);
        peak = Math.max(peak, m.peakRss);
        summary = m.value;
      }
      if (!summary) throw new Error('no run');
      // The second half of a window's cost: judging the summary against a baseline (three windows like it).
      const current = summary;
      const judged = performance.now();
      const verdict = evaluateWindow({
        reference: mergeCounts([current, current, current]),
        current,
        config: parseDriftConfig({}),
        history: [],
      });
      const evaluateMs = performance.now() - judged;
      console.log(
        `  ${n.toLocaleString('en-US').padStart(9)} requests: ${files.length} chunks, ${mib(bytes)} of JSON lines ` +
          `(written in ${gen.seconds.toFixed(1)} s)`,
      );
      console.log(
        `             summarise from local files: median ${median(seconds).toFixed(2)} s ` +
          `(${seconds.map((s) => s.toFixed(2)).join(' ')}), peak RSS ${mib(peak)} (${mib(before)} before)`,
      );
      console.log(
        `             ${summary.requests} requests, ${summary.feedback} feedback, ` +
          `CTR ${(summary.counts.ctr[1]! / (summary.counts.ctr[0]! + summary.counts.ctr[1]!)).toFixed(3)}, ` +
          `coverage ${summary.concentration.coverage.toFixed(3)}, entropy ${summary.concentration.entropyBits.toFixed(2)} bits`,
      );
      console.log(
        `             evaluate against a 3-window baseline: ${evaluateMs.toFixed(1)} ms (${verdict.status}); ` +
          `summarise + evaluate: ${(median(seconds) + evaluateMs / 1000).toFixed(2)} s`,
      );
      if (n === 100_000) await fromStore(dir, files, reference);
      await fs.rm(dir, { recursive: true, force: true });
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

/** The 100k window from the real object store: upload its chunks, summarise cold (downloads) and warm (cache). */
async function fromStore(dir: string, files: string[], reference: DriftReference): Promise<void> {
  if (!(await stackUp())) {
    console.log('             object store: not reachable (make stack-up), skipped');
    return;
  }
  const store = objectStore();
  const prefix = `s3://${config().bucket}/${benchName('bench-drift-window')}`;
  const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-drift-cache-'));
  try {
    const t = performance.now();
    for (let i = 0; i < files.length; i += 16)
      await Promise.all(files.slice(i, i + 16).map((f) => store.putFile(`${prefix}/${path.relative(dir, f)}`, f)));
    const upload = (performance.now() - t) / 1000;
    const cache = new ChunkCache({ store, cacheDir });
    const input = {
      store,
      prefix,
      model: 'bench-drift',
      env: 'production',
      window: WINDOW,
      graceMs: GRACE_MS,
      reference,
      cacheDir,
      cache,
    };
    const phased = async () => {
      const at: Partial<Record<SummarizeProgress['phase'], number>> = {};
      const t0 = performance.now();
      const m = await measured(() =>
        summarizeWindow({ ...input, onProgress: (p) => void (at[p.phase] ??= performance.now()) }),
      );
      const end = t0 + m.seconds * 1000;
      const s = (a: number | undefined, b: number | undefined) => (((b ?? end) - (a ?? t0)) / 1000).toFixed(2);
      // The first fetch report comes after the first chunk: list time includes that one chunk.
      return {
        ...m,
        split: `list ${s(t0, at.fetch)}, fetch ${s(at.fetch, at.summarize)}, summarise ${s(at.summarize, end)}`,
      };
    };
    const cold = await phased();
    const warm = await phased();
    console.log(`             from the object store (${files.length} objects uploaded in ${upload.toFixed(1)} s):`);
    console.log(`               cold (downloads) ${cold.seconds.toFixed(2)} s: ${cold.split}`);
    console.log(`               warm (cache hits) ${warm.seconds.toFixed(2)} s: ${warm.split}`);
    console.log(`               peak RSS ${mib(Math.max(cold.peakRss, warm.peakRss))}`);
  } finally {
    await store.deletePrefix(`${prefix}/`);
    await fs.rm(cacheDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
