/**
 * The local chunk cache: an unchanged chunk is read once, a changed ETag downloads again (and the stale copy goes),
 * concurrent fetches of one chunk leave one whole file, the sidecar index says which window a chunk can serve, and
 * old hours are evicted.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ChunkCache, CHUNK_CACHE_DIR, indexFiles, mayOverlap } from '../../../../fleet/logs/chunk-cache';
import { HOUR_MS, listChunks } from '../../../../fleet/logs/chunks';
import { chunkKey, hourPrefix } from '../../../../serving/log-layout';
import { MemoryStore } from './memory-store';

const PREFIX = 's3://b/logs';
const T0 = Date.UTC(2026, 2, 1, 10);
const lines = (...times: number[]) => times.map((t) => JSON.stringify({ time_ms: t, request_id: `r${t}` })).join('\n');
const uriAt = (t: number, seq: number) =>
  `${PREFIX}/${chunkKey(hourPrefix('recommend', 'm', 'production', t).slice(0, -1), 'srv', seq)}`;

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-chunk-cache-'));
});
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

const list = (s: MemoryStore, fromMs = T0, toMs = T0 + HOUR_MS) =>
  listChunks(s.asStore(), { prefix: PREFIX, kind: 'recommend', model: 'm', env: 'production', fromMs, toMs });

test('downloads once, reuses while the ETag holds, downloads again when it changes', async () => {
  const s = new MemoryStore();
  s.put(uriAt(T0, 1), lines(T0 + 10, T0 + 5, T0 + 20));
  s.put(uriAt(T0, 2), lines(T0 + 30));
  const cache = new ChunkCache({ store: s.asStore(), cacheDir: dir, now: () => T0 });

  const first = await cache.fetch(await list(s));
  expect(first.map((c) => c.downloaded)).toEqual([true, true]);
  expect(first[0]!.index).toEqual({ records: 3, minTimeMs: T0 + 5, maxTimeMs: T0 + 20 });
  expect(await fs.readFile(first[0]!.file, 'utf8')).toBe(lines(T0 + 10, T0 + 5, T0 + 20));
  expect(first[0]!.file.startsWith(path.join(dir, CHUNK_CACHE_DIR, '2026-03-01T10'))).toBe(true);

  const again = await new ChunkCache({ store: s.asStore(), cacheDir: dir, now: () => T0 }).fetch(await list(s));
  expect(again.map((c) => c.downloaded)).toEqual([false, false]);
  expect(again[0]!.index).toEqual(first[0]!.index);
  expect(s.downloads.get(uriAt(T0, 1))).toBe(1);

  s.put(uriAt(T0, 1), lines(T0 + 40, T0 + 50));
  const changed = await cache.fetch(await list(s));
  expect(changed.map((c) => c.downloaded)).toEqual([true, false]);
  expect(changed[0]!.index).toEqual({ records: 2, minTimeMs: T0 + 40, maxTimeMs: T0 + 50 });
  expect(await fs.readFile(changed[0]!.file, 'utf8')).toBe(lines(T0 + 40, T0 + 50));
  // One copy per key: the stale version and its sidecar are gone.
  const files = await fs.readdir(path.dirname(changed[0]!.file));
  expect(files.filter((f) => !f.endsWith('.partial')).sort()).toHaveLength(4);
  await expect(fs.access(first[0]!.file)).rejects.toThrow();
});

test('a lost sidecar is recomputed without downloading; a chunk with no record never overlaps', async () => {
  const s = new MemoryStore();
  s.put(uriAt(T0, 1), lines(T0 + 1));
  s.put(uriAt(T0, 2), 'not json\n\n{"time_ms": "late"}\n');
  const cache = new ChunkCache({ store: s.asStore(), cacheDir: dir, now: () => T0 });
  const [a, b] = await cache.fetch(await list(s));
  expect(b!.index).toEqual({ records: 0, minTimeMs: null, maxTimeMs: null });
  expect(mayOverlap(b!.index, 0, Number.MAX_SAFE_INTEGER)).toBe(false);
  await fs.writeFile(a!.file.replace(/\.jsonl$/, '.index.json'), '{torn');
  const [again] = await cache.fetch(await list(s));
  expect(again!.downloaded).toBe(false);
  expect(again!.index).toEqual({ records: 1, minTimeMs: T0 + 1, maxTimeMs: T0 + 1 });
  expect(s.downloads.get(uriAt(T0, 1))).toBe(1);
});

test('mayOverlap: [min, max] against [from, to)', () => {
  const index = { records: 2, minTimeMs: 100, maxTimeMs: 200 };
  expect(mayOverlap(index, 200, 300)).toBe(true);
  expect(mayOverlap(index, 201, 300)).toBe(false);
  expect(mayOverlap(index, 0, 100)).toBe(false);
  expect(mayOverlap(index, 0, 101)).toBe(true);
});

test('concurrent fetches of one chunk by two caches leave one whole file', async () => {
  const s = new MemoryStore();
  const body = lines(...Array.from({ length: 5000 }, (_, i) => T0 + i));
  s.put(uriAt(T0, 1), body);
  // Both downloads are under way before either finishes.
  let waiting: (() => void)[] = [];
  s.beforeDownload = () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      if (waiting.length === 2) {
        waiting.forEach((r) => r());
        waiting = [];
      }
    });
  const chunks = await list(s);
  const [x, y] = await Promise.all(
    [1, 2].map(() => new ChunkCache({ store: s.asStore(), cacheDir: dir, now: () => T0 }).fetch(chunks)),
  );
  expect(s.downloads.get(uriAt(T0, 1))).toBe(2);
  expect(x![0]!.file).toBe(y![0]!.file);
  expect(await fs.readFile(x![0]!.file, 'utf8')).toBe(body);
  expect(x![0]!.index).toEqual({ records: 5000, minTimeMs: T0, maxTimeMs: T0 + 4999 });
  const left = await fs.readdir(path.dirname(x![0]!.file));
  expect(left.filter((f) => /partial|download/.test(f))).toEqual([]);
});

test('evicts hours older than the age bound, never one the fetch needs', async () => {
  const s = new MemoryStore();
  const old = T0 - 5 * HOUR_MS;
  s.put(uriAt(old, 1), lines(old + 1));
  s.put(uriAt(T0, 2), lines(T0 + 1));
  let now = T0;
  const cache = new ChunkCache({ store: s.asStore(), cacheDir: dir, maxAgeMs: 2 * HOUR_MS, now: () => now });
  const [oldChunk] = await cache.fetch(await list(s, old, old + 1));
  expect(oldChunk!.downloaded).toBe(true); // needed now, so kept although old
  await fs.mkdir(path.join(dir, CHUNK_CACHE_DIR, 'not-an-hour'));
  await cache.fetch(await list(s, T0, T0 + 1));
  const root = path.join(dir, CHUNK_CACHE_DIR);
  expect((await fs.readdir(root)).sort()).toEqual(['2026-03-01T10', 'not-an-hour']);
  now = T0 + 4 * HOUR_MS;
  expect(await cache.evict()).toBe(1);
  expect(await fs.readdir(root)).toEqual(['not-an-hour']);
});

test('a chunk that changed between listing and download is refused, not stored under the old ETag', async () => {
  const s = new MemoryStore();
  s.put(uriAt(T0, 1), lines(T0 + 1));
  const chunks = await list(s);
  s.put(uriAt(T0, 1), lines(T0 + 1, T0 + 2));
  const cache = new ChunkCache({ store: s.asStore(), cacheDir: dir, now: () => T0 });
  await expect(cache.fetch(chunks)).rejects.toThrow(/changed while being read/);
  await expect(fs.access(cache.fileOf(chunks[0]!))).rejects.toThrow();
});

test('indexFiles refuses globs and URLs', async () => {
  await expect(indexFiles(['/tmp/*.jsonl'])).rejects.toThrow(/not a plain local file path/);
  await expect(indexFiles(['s3://b/k.jsonl'])).rejects.toThrow(/not a plain local file path/);
});
