/**
 * Feedback as training data: the chosen events of (model, env) in [fromMs, toMs), sorted by time, request and item
 * whatever order the chunks hold them in, the same bytes on every export of the window, and nothing written when no
 * record matches.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exportFeedback } from '../../../../fleet/logs/feedback-export';
import { chunkKey, hourPrefix } from '../../../../serving/log-layout';
import { MemoryStore } from './memory-store';

const PREFIX = 's3://b/logs';
const T0 = Date.UTC(2026, 2, 1, 10);
const chunkUri = (env: string | null, t: number, server: string, seq: number) =>
  `${PREFIX}/${chunkKey(hourPrefix('feedback', 'm', env, t).slice(0, -1), server, seq)}`;
const fb = (t: number, request_id: string, item_id: string, event = 'FEEDBACK_EVENT_CLICK') => ({
  time: new Date(t).toISOString(),
  time_ms: t,
  request_id,
  user_id: `user-${request_id}`,
  item_id,
  event,
  event_time_ms: t - 5,
  value: 1.5,
  model_name: 'm',
  model_version: '3',
});
const body = (...records: object[]) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-feedback-export-'));
});
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

function store(): MemoryStore {
  const s = new MemoryStore();
  // Two servers' chunks of one hour, out of order, plus the next hour, another env and a legacy chunk.
  s.put(
    chunkUri('production', T0, 'srv-b', 1),
    body(fb(T0 + 20, 'r2', 'b'), fb(T0 + 10, 'r1', 'z'), fb(T0 + 10, 'r1', 'a'), fb(T0 - 1, 'r0', 'a')),
  );
  s.put(
    chunkUri('production', T0, 'srv-a', 1),
    body(fb(T0 + 15, 'r9', 'c', 'FEEDBACK_EVENT_IMPRESSION'), fb(T0 + 10, 'r0', 'q')) + '{"torn": \n',
  );
  s.put(chunkUri('production', T0 + 3_600_000, 'srv-a', 2), body(fb(T0 + 3_600_000, 'r5', 'a')));
  s.put(chunkUri('staging', T0, 'srv-c', 1), body(fb(T0 + 11, 's1', 'a')));
  s.put(chunkUri(null, T0, 'srv-d', 1), body(fb(T0 + 12, 'legacy', 'a')));
  return s;
}

test('clicks of the window, sorted, as JSON lines of the record fields; the same bytes every time', async () => {
  const s = store();
  const input = {
    store: s.asStore(),
    prefix: PREFIX,
    model: 'm',
    env: 'production',
    fromMs: T0,
    toMs: T0 + 3_600_000,
    outUri: 's3://b/exports/m/production/clicks.jsonl',
    cacheDir: dir,
  };
  const result = await exportFeedback(input);
  const bytes = s.objects.get(input.outUri)!;
  expect(result).toEqual({
    uri: input.outUri,
    rows: 4,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    fromMs: T0,
    toMs: T0 + 3_600_000,
  });
  const rows = bytes
    .toString('utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(rows.map((r) => [r.time_ms, r.request_id, r.item_id])).toEqual([
    [T0 + 10, 'r0', 'q'],
    [T0 + 10, 'r1', 'a'],
    [T0 + 10, 'r1', 'z'],
    [T0 + 20, 'r2', 'b'],
  ]);
  const fields: Record<string, unknown> = { ...fb(T0 + 20, 'r2', 'b') };
  delete fields.time; // added by the writer, not a record field
  expect(rows[3]).toEqual(fields);
  expect(Object.keys(rows[0]!)).toEqual(Object.keys(fields));

  // Again, from a fresh cache: identical bytes and digest.
  s.objects.delete(input.outUri);
  const again = await exportFeedback({ ...input, cacheDir: path.join(dir, 'other') });
  expect(again).toEqual(result);
  expect(s.objects.get(input.outUri)!.equals(bytes)).toBe(true);
});

test('events to keep and the legacy layout are options', async () => {
  const s = store();
  const base = {
    store: s.asStore(),
    prefix: PREFIX,
    model: 'm',
    env: 'production',
    fromMs: T0,
    toMs: T0 + 3_600_000,
    outUri: 's3://b/exports/x.jsonl',
    cacheDir: dir,
  };
  expect((await exportFeedback({ ...base, events: ['FEEDBACK_EVENT_CLICK', 'FEEDBACK_EVENT_IMPRESSION'] })).rows).toBe(
    5,
  );
  expect((await exportFeedback({ ...base, includeLegacy: true })).rows).toBe(5);
  await expect(exportFeedback({ ...base, events: ["CLICK'; DROP"] })).rejects.toThrow(/events: .* is not a feedback/);
  await expect(exportFeedback({ ...base, events: [] })).rejects.toThrow(/at least one/);
});

test('no matching record: nothing is written', async () => {
  const s = store();
  const outUri = 's3://b/exports/none.jsonl';
  const base = { store: s.asStore(), prefix: PREFIX, model: 'm', env: 'production', outUri, cacheDir: dir };
  expect(await exportFeedback({ ...base, fromMs: T0 + 30, toMs: T0 + 40 })).toEqual({
    uri: undefined,
    rows: 0,
    sha256: undefined,
    fromMs: T0 + 30,
    toMs: T0 + 40,
  });
  expect(await exportFeedback({ ...base, env: 'canary', fromMs: T0, toMs: T0 + 40 })).toMatchObject({ rows: 0 });
  expect(s.objects.has(outUri)).toBe(false);
});
