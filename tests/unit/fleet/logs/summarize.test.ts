/**
 * A drift window summarised from local JSON-lines files written here: exact bucket counts of a small hand-made window
 * (worked out by hand below), its boundaries, the CTR join with the grace period, fallback answers kept out of the
 * model's signals, old records without history_items, malformed lines, and the SQL score buckets agreeing with
 * scoreBucket.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { referenceFromStatistics, sqlScoreBuckets, summarizeFiles } from '../../../../fleet/logs/summarize';
import { BUCKETS, SCORE_BUCKETS, SCORE_EDGES, scoreBucket, type SignalName } from '../../../../lib/drift/summary';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-drift-summary-'));
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

async function jsonl(name: string, lines: (object | string)[]): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}

/** Deciles: a 50 → 0, b 20 → 5, c 10 → 7, d 10 → 8, e 10 → 9 (share of interactions before each item). */
const reference = referenceFromStatistics('s3://recsys/datasets/toy/v1/', 'v1', {
  itemCounts: { a: 50, b: 20, c: 10, d: 10, e: 10 },
  userCounts: { u1: 3, u2: 4 },
});

const S = 1_000_000;
const E = 2_000_000;
const G = 500_000;
const items = (...pairs: [string, number][]) => pairs.map(([item_id, score]) => ({ item_id, score }));
const rec = (t: number, request_id: string, extra: object) => ({
  time: new Date(t).toISOString(),
  time_ms: t,
  request_id,
  user_id: 'u1',
  history_len: 0,
  history_items: [],
  items: [],
  model_name: 'm',
  model_version: '1',
  dataset_name: 'toy',
  dataset_version: 'v1',
  latency_ms: 1,
  fallback: false,
  fallback_reason: 'FALLBACK_REASON_UNSPECIFIED',
  ...extra,
});
const fb = (t: number, request_id: string, item_id: string, event: string) => ({
  time_ms: t,
  request_id,
  user_id: 'u1',
  item_id,
  event,
  event_time_ms: t,
  value: 0,
  model_name: 'm',
  model_version: '1',
});

async function window() {
  const recommend = await jsonl('recommend.jsonl', [
    rec(S - 1, 'before', { items: items(['a', 1]) }), // before the window
    rec(S, 'q1', { history_len: 3, history_items: ['a', 'b', 'x'], items: items(['a', 2], ['c', 0.5]) }),
    rec(S + 500_000, 'q2', {
      user_id: 'u9',
      fallback: true,
      fallback_reason: 'FALLBACK_REASON_NO_HISTORY',
      items: items(['a', 0.3], ['b', 0.2]),
    }),
    '{"time_ms": 1200000, "items": [{"item_id": "a", "sco', // torn line
    'not json at all',
  ]);
  // A chunk written before history_items existed, and one of the new kind.
  const old: Record<string, unknown> = rec(E - 1, 'q3', {
    user_id: 'u2',
    history_len: 25,
    model_version: '2',
    items: items(['d', -0.01]),
  });
  delete old.history_items;
  const recommendOld = await jsonl('recommend-old.jsonl', [old]);
  const recommendNew = await jsonl('recommend-new.jsonl', [
    rec(S + 600_000, 'q6', {
      user_id: 'u2',
      history_len: 1,
      history_items: ['e'],
      model_version: '2',
      items: items(['e', 1000]),
    }),
    rec(E, 'after', {}), // the window's end is excluded
  ]);
  const feedback = await jsonl('feedback.jsonl', [
    fb(S - 100, 'q1', 'a', 'FEEDBACK_EVENT_CLICK'), // before the window: not counted
    fb(S + 100_000, 'q1', 'c', 'FEEDBACK_EVENT_CLICK'),
    fb(S + 200_000, 'q2', 'a', 'FEEDBACK_EVENT_CLICK'), // a click on a fallback answer
    fb(S + 300_000, 'q3', 'z', 'FEEDBACK_EVENT_IMPRESSION'), // an item the dataset lacks
    fb(E + G - 1, 'q3', 'd', 'FEEDBACK_EVENT_CLICK'), // in the grace period: counts for q3's CTR only
    fb(E + G, 'q6', 'e', 'FEEDBACK_EVENT_CLICK'), // after the grace period
    fb(S + 400_000, '', 'b', 'FEEDBACK_EVENT_CLICK'), // outside any recommendation
  ]);
  return { recommendFiles: [recommend, recommendOld, recommendNew], feedbackFiles: [feedback] };
}

test('bucket counts of a hand-made window are exact', async () => {
  const s = await summarizeFiles({
    ...(await window()),
    window: { startMs: S, endMs: E },
    graceMs: G,
    reference,
    model: 'm',
    env: 'production',
  });
  const score = (...xs: number[]) => {
    const out = new Array<number>(SCORE_BUCKETS).fill(0);
    for (const x of xs) out[scoreBucket(x)]!++;
    return out;
  };
  const expected: Record<SignalName, number[]> = {
    // q1 u1, q2 u9 (unknown), q3 u2, q6 u2
    'user-unknown': [3, 1],
    // q1 3 → [2,5), q2 0 → [0], q3 25 → [20,50), q6 1 → [1]
    'history-length': [1, 1, 1, 0, 0, 1, 0],
    // q1: a (0), b (5), x (unknown); q6: e (9); q3 logged none
    'requested-popularity': [1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1],
    // model answers only: q1 a (0), c (7); q3 d (8); q6 e (9)
    'recommended-popularity': [1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0],
    // in [S, E): q1 c, q2 a, q3 z (new), '' b
    'feedback-new-items': [3, 1],
    'score-top1': score(2, -0.01, 1000),
    'score-mean': score(1.25, -0.01, 1000),
    // model answers q1 (clicked), q3 (clicked in the grace period), q6 (its click came too late)
    ctr: [1, 2],
    fallback: [3, 1],
  };
  expect(s.counts).toEqual(expected);
  for (const sig of Object.keys(BUCKETS) as SignalName[]) expect(s.counts[sig]).toHaveLength(BUCKETS[sig]);
  expect(s.counts['score-top1'][SCORE_BUCKETS - 1]).toBe(1); // 1000 is the last edge: the last bucket
  expect(s).toMatchObject({
    summaryVersion: 1,
    model: 'm',
    env: 'production',
    window: { startMs: S, endMs: E },
    reference: { datasetUri: 's3://recsys/datasets/toy/v1/', datasetVersion: 'v1' },
    requests: 4,
    feedback: 4,
    versions: { '1': 2, '2': 2 },
    chunks: 4,
  });
  // a, c, d, e once each out of a catalogue of 5: 4 distinct, 2 bits.
  expect(s.concentration.distinctItems).toBe(4);
  expect(s.concentration.coverage).toBeCloseTo(0.8, 12);
  expect(s.concentration.entropyBits).toBeCloseTo(2, 12);
});

test('window boundaries: [start, end) for requests, a grace of 0 drops late clicks', async () => {
  const files = await window();
  const s = await summarizeFiles({
    ...files,
    window: { startMs: S, endMs: S + 500_000 },
    graceMs: 0,
    reference,
    model: 'm',
    env: 'production',
  });
  // Only q1 (at the start); q2 at S + 500,000 is the next window's.
  expect(s.requests).toBe(1);
  expect(s.counts.ctr).toEqual([0, 1]);
  expect(s.feedback).toBe(4); // q1 c, q2 a, q3 z, '' b: all before S + 500,000
  const late = await summarizeFiles({
    ...files,
    window: { startMs: E - 1, endMs: E },
    graceMs: 0,
    reference,
    model: 'm',
    env: 'production',
  });
  expect(late.requests).toBe(1); // q3
  expect(late.counts.ctr).toEqual([1, 0]); // its click at E + G - 1 is outside a zero grace
  expect(late.counts['requested-popularity'].reduce((a, b) => a + b)).toBe(0);
});

test('no files: an empty summary with every bucket zero', async () => {
  const s = await summarizeFiles({
    recommendFiles: [],
    feedbackFiles: [],
    window: { startMs: S, endMs: E },
    graceMs: G,
    reference,
    model: 'm',
    env: 'staging',
  });
  expect(s.requests).toBe(0);
  expect(s.feedback).toBe(0);
  expect(s.chunks).toBe(0);
  expect(
    Object.values(s.counts)
      .flat()
      .every((n) => n === 0),
  ).toBe(true);
  expect(s.concentration).toEqual({ distinctItems: 0, coverage: 0, entropyBits: 0 });
});

test('bad input is refused naming the field', async () => {
  const base = { recommendFiles: [], feedbackFiles: [], reference, model: 'm', env: 'e' };
  await expect(summarizeFiles({ ...base, window: { startMs: E, endMs: S }, graceMs: 0 })).rejects.toThrow(
    /startMs, endMs/,
  );
  await expect(summarizeFiles({ ...base, window: { startMs: S, endMs: E }, graceMs: -1 })).rejects.toThrow(/graceMs/);
  await expect(
    summarizeFiles({ ...base, recommendFiles: ['s3://b/x.jsonl'], window: { startMs: S, endMs: E }, graceMs: 0 }),
  ).rejects.toThrow(/not a plain local file path/);
});

test('SQL score buckets agree with scoreBucket, at the edges and between them', async () => {
  const values: number[] = [0, -0, Number.MIN_VALUE, -Number.MIN_VALUE, 5e3, -5e3, Number.MAX_VALUE, NaN];
  for (const e of SCORE_EDGES) {
    if (e === 0) continue;
    // The edge itself and its floating-point neighbours (one unit in the last place either side).
    const bits = new BigInt64Array(new Float64Array([e]).buffer)[0]!;
    values.push(e, ...[bits - 1n, bits + 1n].map((b) => new Float64Array(new BigInt64Array([b]).buffer)[0]!));
  }
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  for (let i = 0; i < 2000; i++) values.push(rand() * 10 ** (rand() * 4), Math.fround(rand() * 20));
  const sql = await sqlScoreBuckets(values);
  const js = values.map(scoreBucket);
  const diff = values.map((x, i) => ({ x, sql: sql[i], js: js[i] })).filter((d) => d.sql !== d.js);
  expect(diff).toEqual([]);
  expect(new Set(js).size).toBeGreaterThan(SCORE_BUCKETS - 5); // the test covers nearly every bucket
});

test('the same files give the same summary, to the last bit (DuckDB reads them in parallel)', async () => {
  let seed = 3;
  const rand = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const ids = ['a', 'b', 'c', 'd', 'e', 'x', 'y'];
  const files: string[] = [];
  for (let f = 0; f < 6; f++)
    files.push(
      await jsonl(
        `many-${f}.jsonl`,
        Array.from({ length: 3000 }, (_, i) =>
          rec(S + f * 3000 + i, `m${f}-${i}`, {
            history_items: [ids[Math.floor(rand() * 7)]!],
            items: Array.from({ length: 5 }, () => ({
              item_id: `${ids[Math.floor(rand() * 7)]}${i % 50}`,
              score: rand(),
            })),
          }),
        ),
      ),
    );
  const run = () =>
    summarizeFiles({
      recommendFiles: files,
      feedbackFiles: [],
      window: { startMs: S, endMs: E },
      graceMs: 0,
      reference,
      model: 'm',
      env: 'production',
    });
  const first = await run();
  expect(first.requests).toBe(18_000);
  for (let i = 0; i < 3; i++) expect(await run()).toEqual(first);
});
