/**
 * Listing the chunks of a time range: only the hours that overlap it, only the (kind, model, env) asked for, the
 * legacy layout (no env partition) only when asked, and nothing that is not a chunk key.
 */
import { hoursOverlapping, HOUR_MS, listChunks } from '../../../../fleet/logs/chunks';
import { chunkKey, hourPrefix } from '../../../../serving/log-layout';
import { MemoryStore } from './memory-store';

const PREFIX = 's3://b/serving-logs';
const T0 = Date.UTC(2026, 2, 1, 10); // 10:00 UTC
const key = (kind: 'recommend' | 'feedback', model: string, env: string | null, t: number, seq: number) =>
  chunkKey(hourPrefix(kind, model, env, t).slice(0, -1), 'host-abc-1', seq);

function store(): MemoryStore {
  const s = new MemoryStore();
  const put = (k: string) => s.put(`${PREFIX}/${k}`, '{"time_ms":1}\n');
  put(key('recommend', 'm', 'production', T0 - 1, 1)); // 09:59, the hour before
  put(key('recommend', 'm', 'production', T0, 2)); // 10:00
  put(key('recommend', 'm', 'production', T0 + HOUR_MS + 5, 3)); // 11:00
  put(key('recommend', 'm', 'production', T0 + 2 * HOUR_MS, 4)); // 12:00
  put(key('recommend', 'm', 'staging', T0, 5));
  put(key('recommend', 'm2', 'production', T0, 6));
  put(key('feedback', 'm', 'production', T0, 7));
  put(key('recommend', 'm', null, T0 + 10, 8)); // legacy layout
  put(`${hourPrefix('recommend', 'm', 'production', T0)}notes.txt`); // not a chunk
  return s;
}

test('the hours overlapping a range', () => {
  expect(hoursOverlapping(T0, T0 + 1)).toEqual([T0]);
  expect(hoursOverlapping(T0 - 1, T0 + 1)).toEqual([T0 - HOUR_MS, T0]);
  expect(hoursOverlapping(T0 + 5, T0 + HOUR_MS)).toEqual([T0]);
  expect(hoursOverlapping(T0, T0)).toEqual([]);
});

test('lists only the hours of the range, for the model and environment asked', async () => {
  const chunks = await listChunks(store().asStore(), {
    prefix: PREFIX,
    kind: 'recommend',
    model: 'm',
    env: 'production',
    fromMs: T0 + 30 * 60_000,
    toMs: T0 + HOUR_MS + 1,
  });
  expect(chunks.map((c) => c.parts.seq)).toEqual([2, 3]);
  const [first] = chunks;
  expect(first).toMatchObject({
    key: key('recommend', 'm', 'production', T0, 2),
    uri: `${PREFIX}/${key('recommend', 'm', 'production', T0, 2)}`,
    size: 14,
    parts: { kind: 'recommend', model: 'm', env: 'production', hourStartMs: T0, serverId: 'host-abc-1' },
  });
  expect(first!.etag).toMatch(/^[0-9a-f]{32}$/);
});

test('legacy chunks: alone with env null, added with includeLegacy', async () => {
  const opts = { prefix: `${PREFIX}/`, kind: 'recommend' as const, model: 'm', fromMs: T0, toMs: T0 + HOUR_MS };
  const s = store().asStore();
  expect((await listChunks(s, { ...opts, env: null })).map((c) => [c.parts.seq, c.parts.env])).toEqual([[8, null]]);
  expect((await listChunks(s, { ...opts, env: 'production', includeLegacy: true })).map((c) => c.parts.seq)).toEqual([
    8, 2,
  ]);
  expect((await listChunks(s, { ...opts, env: 'production' })).map((c) => c.parts.seq)).toEqual([2]);
  expect((await listChunks(s, { ...opts, env: 'staging' })).map((c) => c.parts.seq)).toEqual([5]);
});

test('feedback is its own kind; a range in seconds instead of ms is refused', async () => {
  const s = store().asStore();
  const base = { prefix: PREFIX, model: 'm', env: 'production' };
  expect(
    (await listChunks(s, { ...base, kind: 'feedback', fromMs: T0, toMs: T0 + 1 })).map((c) => c.parts.seq),
  ).toEqual([7]);
  await expect(listChunks(s, { ...base, kind: 'feedback', fromMs: T0, toMs: T0 - 1 })).rejects.toThrow(/ordered/);
  await expect(listChunks(s, { ...base, kind: 'feedback', fromMs: 0, toMs: T0 })).rejects.toThrow(/more than a year/);
});
