/**
 * Drift windows from the real object store: chunks sealed by the serving tier's own code (sealChunks, the uploader)
 * under a unique prefix, with the env partition, another environment, a neighbouring hour and a legacy chunk; the
 * window listed, downloaded through the cache and summarised equals the summary of the same records read from local
 * files; a second window reuses every unchanged chunk and downloads a changed one again; the feedback export writes
 * the same bytes twice.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ChunkCache } from '../../fleet/logs/chunk-cache';
import { listChunks } from '../../fleet/logs/chunks';
import { exportFeedback } from '../../fleet/logs/feedback-export';
import {
  loadDriftReference,
  summarizeFiles,
  summarizeWindow,
  type SummarizeProgress,
} from '../../fleet/logs/summarize';
import { config } from '../../lib/config';
import { objectStore } from '../../lib/object-store';
import { sealChunks, type LogChunk } from '../../serving/log-chunks';
import { chunkKey, hourPrefix } from '../../serving/log-layout';
import type { FeedbackLogRecord, LogEntry, RecommendLogRecord } from '../../serving/log-records';
import { objectStoreUploader } from '../../serving/log-uploader';
import { uniqueName } from './stack';

const store = objectStore();
const root = `s3://${config().bucket}/${uniqueName('it-drift-logs')}`;
const prefix = `${root}/serving-logs`;
const datasetUri = `${root}/datasets/toy/v1/`;
const MODEL = 'drift-it-model';
const W0 = Date.UTC(2026, 0, 5, 10, 20); // the window: 10:20-10:30 UTC
const W1 = W0 + 10 * 60_000;
const GRACE = 60_000;
let cacheDir: string;

const recommend = (t: number, i: number, extra: Partial<RecommendLogRecord> = {}): LogEntry => ({
  kind: 'recommend',
  record: {
    time_ms: t,
    request_id: `req-${t}-${i}`,
    user_id: i % 4 === 0 ? `stranger-${i}` : `u${i % 3}`,
    history_len: i % 7,
    history_items: ['a', 'b', 'c', 'new-item'].slice(0, i % 5),
    items: [
      { item_id: ['a', 'b', 'c', 'd'][i % 4]!, score: 1 + i / 10 },
      { item_id: 'e', score: 0.5 },
    ],
    model_name: MODEL,
    model_version: i % 5 === 0 ? '2' : '1',
    dataset_name: 'toy',
    dataset_version: 'v1',
    latency_ms: 2,
    fallback: i % 6 === 0,
    fallback_reason: i % 6 === 0 ? 'FALLBACK_REASON_NO_HISTORY' : 'FALLBACK_REASON_UNSPECIFIED',
    ...extra,
  },
});
const feedback = (t: number, requestId: string, item: string, event: FeedbackLogRecord['event']): LogEntry => ({
  kind: 'feedback',
  record: {
    time_ms: t,
    request_id: requestId,
    user_id: 'u1',
    item_id: item,
    event,
    event_time_ms: t,
    value: 0,
    model_name: MODEL,
    model_version: '1',
  },
});

/** Requests every 20 s from W0 - 1 min to W1 + 1 min (so some fall outside), a click on every third one. */
function production(): LogEntry[] {
  const out: LogEntry[] = [];
  let i = 0;
  for (let t = W0 - 60_000; t < W1 + 60_000; t += 20_000, i++) {
    const r = recommend(t, i);
    out.push(r);
    if (i % 3 === 0) out.push(feedback(t + 30_000, r.record.request_id, 'a', 'FEEDBACK_EVENT_CLICK'));
    else out.push(feedback(t + 1_000, r.record.request_id, i % 2 ? 'b' : 'zz', 'FEEDBACK_EVENT_IMPRESSION'));
  }
  return out;
}

async function upload(entries: LogEntry[], env: string, serverId: string, batch = 7): Promise<LogChunk[]> {
  const uploader = objectStoreUploader(store, prefix);
  let seq = 0;
  const chunks: LogChunk[] = [];
  for (let i = 0; i < entries.length; i += batch)
    for (const c of sealChunks(entries.slice(i, i + batch), { serverId, env }, () => seq++, Date.now())) {
      await uploader.put(c.key, c.body);
      chunks.push(c);
    }
  return chunks;
}

/** Records of a chunk body inside the window. */
const inWindowOf = (body: string) =>
  body
    .trimEnd()
    .split('\n')
    .filter((l) => {
      const t = (JSON.parse(l) as { time_ms: number }).time_ms;
      return t >= W0 && t < W1;
    }).length;

/** The records as local files, the way a test reads them without the store. */
async function localFiles(entries: LogEntry[], kind: 'recommend' | 'feedback'): Promise<string> {
  const file = path.join(cacheDir, `local-${kind}-${Math.random().toString(36).slice(2)}.jsonl`);
  await fs.writeFile(
    file,
    entries
      .filter((e) => e.kind === kind)
      .map((e) => JSON.stringify(e.record))
      .join('\n') + '\n',
  );
  return file;
}

beforeAll(async () => {
  cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'it-drift-logs-'));
  await store.putJson(`${datasetUri}statistics.json`, {
    statisticsVersion: 1,
    rows: 100,
    users: 3,
    items: 5,
    schema: {},
    timestamp: { min: 0, max: 0 },
    dailyVolume: { firstDay: 0, counts: [] },
    gaps: [],
    itemCounts: { a: 50, b: 20, c: 10, d: 10, e: 10 },
    userCounts: { u0: 10, u1: 20, u2: 70 },
    userActivity: {},
    ratings: {},
  });
});

afterAll(async () => {
  await store.deletePrefix(`${root}/`);
  if (cacheDir) await fs.rm(cacheDir, { recursive: true, force: true });
});

test('a window read from the store equals the same records read locally; the cache reuses and refreshes', async () => {
  const reference = await loadDriftReference(store, datasetUri, cacheDir);
  expect(reference.catalogueSize).toBe(5);
  const prod = production();
  const prodChunks = await upload(prod, 'production', 'it-prod-1');
  // Staging traffic in the same hours must never count for production.
  await upload(
    Array.from({ length: 10 }, (_, i) => recommend(W0 + i * 1000, 100 + i, { user_id: 'staging-user' })),
    'staging',
    'it-stg-1',
  );
  // A chunk of the legacy layout (before the env partition): read only when asked.
  const legacy = [recommend(W0 + 5_000, 200), recommend(W0 + 6_000, 201)];
  const legacyKey = chunkKey(hourPrefix('recommend', MODEL, null, W0).slice(0, -1), 'it-old-1', 0);
  await store.putBytes(`${prefix}/${legacyKey}`, legacy.map((e) => JSON.stringify(e.record)).join('\n') + '\n');

  const cache = new ChunkCache({ store, cacheDir });
  const progress: SummarizeProgress[] = [];
  const base = { store, prefix, model: MODEL, env: 'production', graceMs: GRACE, reference, cacheDir, cache };
  const window = { startMs: W0, endMs: W1 };
  const summary = await summarizeWindow({ ...base, window, onProgress: (p) => progress.push(p) });

  const inWindow = prod.filter((e) => e.kind === 'recommend' && e.record.time_ms >= W0 && e.record.time_ms < W1);
  expect(summary.requests).toBe(inWindow.length);
  expect(summary.requests).toBe(30);
  const expected = await summarizeFiles({
    recommendFiles: [await localFiles(prod, 'recommend')],
    feedbackFiles: [await localFiles(prod, 'feedback')],
    window,
    graceMs: GRACE,
    reference,
    model: MODEL,
    env: 'production',
  });
  expect(summary.counts).toEqual(expected.counts);
  expect(summary.versions).toEqual(expected.versions);
  expect(summary.concentration).toEqual(expected.concentration);
  expect(summary.feedback).toBe(expected.feedback);
  // Clicks come 30 s after their request: the last ones in the window are joined thanks to the grace period.
  const models = inWindow.filter((e) => e.kind === 'recommend' && !e.record.fallback).length;
  expect(summary.counts.ctr[0]! + summary.counts.ctr[1]!).toBe(models);
  expect(summary.counts.ctr[1]).toBeGreaterThan(0);
  // Only the chunks that hold records of the window (or of its grace, for feedback) were read.
  expect(summary.chunks).toBeGreaterThan(0);
  expect(summary.chunks).toBeLessThan(prodChunks.length);
  const fetches = progress.filter((p) => p.phase === 'fetch').map((p) => p.fetch!);
  expect(fetches.at(-1)).toMatchObject({ done: prodChunks.length, downloaded: prodChunks.length });
  expect(progress.at(-1)?.phase).toBe('summarize');

  // With the legacy chunk: two more requests.
  const withLegacy = await summarizeWindow({ ...base, window, includeLegacy: true });
  expect(withLegacy.requests).toBe(32);

  // Again: nothing new to download (the legacy chunk is not listed this time).
  const again: SummarizeProgress[] = [];
  const second = await summarizeWindow({ ...base, window, onProgress: (p) => again.push(p) });
  expect(second).toEqual(summary);
  expect(again.filter((p) => p.phase === 'fetch').at(-1)?.fetch).toMatchObject({ downloaded: 0 });

  // A chunk rewritten under its key (new ETag) is downloaded again, and only that one.
  const target = prodChunks.find((c) => c.key.startsWith('recommend/') && inWindowOf(c.body) > 0)!;
  const replaced = `${JSON.stringify(recommend(W0 + 1, 999, { user_id: 'stranger-new', fallback: false }).record)}\n`;
  await store.putBytes(`${prefix}/${target.key}`, replaced);
  const third: SummarizeProgress[] = [];
  const changed = await summarizeWindow({ ...base, window, onProgress: (p) => third.push(p) });
  expect(third.filter((p) => p.phase === 'fetch').at(-1)?.fetch).toMatchObject({ downloaded: 1 });
  expect(changed.requests).toBe(summary.requests - inWindowOf(target.body) + 1);
  const [listed] = (
    await listChunks(store, { prefix, kind: 'recommend', model: MODEL, env: 'production', fromMs: W0, toMs: W1 })
  ).filter((c) => c.key === target.key);
  expect(await fs.readFile(cache.fileOf(listed!), 'utf8')).toBe(replaced);
});

test('the feedback export writes the same bytes for the same window', async () => {
  const modelB = `${MODEL}-export`;
  const entries = production().map((e) => ({ ...e, record: { ...e.record, model_name: modelB } }) as LogEntry);
  await upload(entries, 'production', 'it-prod-2', 5);
  const outUri = `${root}/exports/${modelB}/clicks.jsonl`;
  const input = { store, prefix, model: modelB, env: 'production', fromMs: W0, toMs: W1, outUri, cacheDir };
  const first = await exportFeedback(input);
  const clicks = entries.filter(
    (e) => e.kind === 'feedback' && e.record.event === 'FEEDBACK_EVENT_CLICK' && e.record.time_ms >= W0,
  );
  expect(first.rows).toBe(clicks.filter((e) => e.record.time_ms < W1).length);
  expect(first.rows).toBeGreaterThan(5);
  const bytes = await store.getBytes(outUri);
  expect(createHash('sha256').update(bytes!).digest('hex')).toBe(first.sha256);
  const lines = bytes!.toString('utf8').trimEnd().split('\n');
  const times = lines.map((l) => (JSON.parse(l) as { time_ms: number }).time_ms);
  expect(times).toEqual([...times].sort((a, b) => a - b));

  await store.delete(outUri);
  const second = await exportFeedback({ ...input, cacheDir: path.join(cacheDir, 'fresh') });
  expect(second).toEqual(first);
  expect((await store.getBytes(outUri))!.equals(bytes!)).toBe(true);

  const none = await exportFeedback({ ...input, fromMs: W1 + 3_600_000, toMs: W1 + 7_200_000 });
  expect(none).toMatchObject({ rows: 0, uri: undefined });
});
