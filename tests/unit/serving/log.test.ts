/**
 * The request log's own logic with a fake uploader: layout and keys (with the environment partition, and the legacy
 * keys without it still parsed), the bounded history ids of a recommend record, batching by size and time, bounded
 * memory with
 * spilling to disk while uploads fail, retries oldest first under the same keys, nothing lost across close(), every
 * sealed chunk on disk before it ships (so a process that dies without close() loses only what it had not sealed),
 * and spill files that are not chunks set aside as `.bad` while the others ship.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sealChunks } from '../../../serving/log-chunks';
import { lastHistoryItems, telemetryHooks } from '../../../serving/log-hooks';
import { ADHOC_ENV, chunkKey, hourPrefix, parseChunkKey, partitionOf } from '../../../serving/log-layout';
import { HISTORY_LOG_ITEMS, historyItemsOf, type LogEntry } from '../../../serving/log-records';
import { parseSpillFile } from '../../../serving/log-spill';
import type { ModelPool } from '../../../serving/model-pool';
import type { RecommendRequest } from '../../../serving/proto';
import { RequestLog, type ChunkUploader } from '../../../serving/request-log';

const T0 = Date.UTC(2026, 10, 22, 5, 59, 59, 500);

const rec = (i: number, timeMs = T0, model = 'm'): LogEntry => ({
  kind: 'recommend',
  record: {
    time_ms: timeMs,
    request_id: `r${i}`,
    user_id: `u${i}`,
    history_len: i,
    history_items: [`h${i}`],
    items: [{ item_id: 'a', score: 0.5 }],
    model_name: model,
    model_version: '3',
    dataset_name: 'd',
    dataset_version: 'dv',
    latency_ms: 0.25,
    fallback: false,
    fallback_reason: 'FALLBACK_REASON_UNSPECIFIED',
  },
});

const fb = (i: number): LogEntry => ({
  kind: 'feedback',
  record: {
    time_ms: T0,
    request_id: `r${i}`,
    user_id: `u${i}`,
    item_id: 'a',
    event: 'FEEDBACK_EVENT_CLICK',
    event_time_ms: T0,
    value: 0,
    model_name: 'm',
    model_version: '3',
  },
});

/** Fails while `down`, records every attempt, keeps the last body per key like an object store. */
class FakeStore implements ChunkUploader {
  down = false;
  attempts: string[] = [];
  objects = new Map<string, string>();
  put(key: string, body: string): Promise<void> {
    this.attempts.push(key);
    if (this.down) return Promise.reject(new Error('store unreachable'));
    this.objects.set(key, body);
    return Promise.resolve();
  }
  records(): { request_id: string; time: string }[] {
    return [...this.objects.values()].flatMap((b) =>
      b
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { request_id: string; time: string }),
    );
  }
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

let dir: string;
beforeEach(async () => (dir = await fs.mkdtemp(path.join(os.tmpdir(), 'serving-log-'))));
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

const newLog = (store: FakeStore, more: Partial<ConstructorParameters<typeof RequestLog>[0]> = {}) =>
  new RequestLog({
    uploader: store,
    spillDir: dir,
    batchRecords: 2,
    flushIntervalMs: 60_000,
    maxChunksInMemory: 1,
    minRetryDelayMs: 5,
    maxRetryDelayMs: 20,
    onError: () => undefined,
    ...more,
  });

test('layout: kind, model, environment, UTC date and hour partitions; zero-padded sequence', () => {
  expect(partitionOf('recommend', 'two tower/x', 'staging', T0)).toBe(
    'recommend/model=two_tower_x/env=staging/date=2026-11-22/hour=05',
  );
  expect(hourPrefix('feedback', 'm', 'production', T0)).toBe(
    'feedback/model=m/env=production/date=2026-11-22/hour=05/',
  );
  expect(hourPrefix('feedback', 'm', null, T0)).toBe('feedback/model=m/date=2026-11-22/hour=05/');
  expect(chunkKey('feedback/model=m/env=adhoc/date=2026-11-22/hour=05', 'host-1', 7)).toBe(
    'feedback/model=m/env=adhoc/date=2026-11-22/hour=05/host-1-00000007.jsonl',
  );
});

test('parseChunkKey reads keys of both layouts (env null for chunks written before environments) and nothing else', () => {
  const hour = Date.UTC(2026, 10, 22, 5);
  expect(
    parseChunkKey('recommend/model=two-tower/env=production/date=2026-11-22/hour=05/h-1-abc-00000042.jsonl'),
  ).toEqual({
    kind: 'recommend',
    model: 'two-tower',
    env: 'production',
    hourStartMs: hour,
    serverId: 'h-1-abc',
    seq: 42,
  });
  expect(parseChunkKey('feedback/model=m/date=2026-11-22/hour=05/srv-00000007.jsonl')).toEqual({
    kind: 'feedback',
    model: 'm',
    env: null,
    hourStartMs: hour,
    serverId: 'srv',
    seq: 7,
  });
  // What sealing writes parses back to its own parts.
  const key = chunkKey(partitionOf('feedback', 'm', 'staging', T0), 'srv', 3);
  expect(parseChunkKey(key)).toMatchObject({ kind: 'feedback', model: 'm', env: 'staging', hourStartMs: hour, seq: 3 });
  for (const bad of [
    'recommend/model=m/env=production/date=2026-11-22/hour=05/srv-00000001.json',
    'clicks/model=m/date=2026-11-22/hour=05/srv-00000001.jsonl',
    'recommend/model=m/env=production/date=2026-11-22/srv-00000001.jsonl',
    'recommend/model=m/date=2026-13-45/hour=99/srv-00000001.jsonl',
    'recommend/model=m/env=a/b/date=2026-11-22/hour=05/srv-00000001.jsonl',
  ])
    expect(parseChunkKey(bad)).toBeUndefined();
});

test('sealing groups records by partition (a record of the next hour goes to its own chunk) as JSON lines', () => {
  let seq = 0;
  const chunks = sealChunks(
    [rec(1), rec(2, T0 + 1000), fb(3), rec(4)],
    { serverId: 'srv', env: 'staging' },
    () => seq++,
    T0,
  );
  expect(chunks.map((c) => [c.key, c.records])).toEqual([
    ['recommend/model=m/env=staging/date=2026-11-22/hour=05/srv-00000000.jsonl', 2],
    ['recommend/model=m/env=staging/date=2026-11-22/hour=06/srv-00000001.jsonl', 1],
    ['feedback/model=m/env=staging/date=2026-11-22/hour=05/srv-00000002.jsonl', 1],
  ]);
  const lines = chunks[0]!.body.split('\n');
  expect(lines).toHaveLength(3); // two records and the final newline
  expect(JSON.parse(lines[0]!)).toEqual({ time: '2026-11-22T05:59:59.500Z', ...rec(1).record });
});

test('a log files its chunks under its environment (adhoc by default) and refuses a name that is no key segment', async () => {
  const store = new FakeStore();
  const staging = newLog(store, { environment: 'staging', serverId: 's' });
  expect(staging.environment).toBe('staging');
  await staging.start();
  staging.append(rec(1));
  await staging.close();
  const adhoc = newLog(store, { serverId: 'a' });
  expect(adhoc.environment).toBe(ADHOC_ENV);
  await adhoc.start();
  adhoc.append(rec(2));
  await adhoc.close();
  expect([...store.objects.keys()].sort()).toEqual([
    'recommend/model=m/env=adhoc/date=2026-11-22/hour=05/a-00000000.jsonl',
    'recommend/model=m/env=staging/date=2026-11-22/hour=05/s-00000000.jsonl',
  ]);
  for (const bad of ['', 'Prod', 'a/b', 'x'.repeat(33), 'env=x'])
    expect(() => newLog(store, { environment: bad })).toThrow(
      `request log: environment must be 1 to 32 lowercase letters, digits or '-', got ${JSON.stringify(bad)}`,
    );
});

describe('history ids in recommend records', () => {
  const timed = (ids: string[], ts: number[] = ids.map(() => 0)) =>
    ids.map((item_id, i) => ({ item_id, timestamp_ms: ts[i]! }));

  it('keeps the last HISTORY_LOG_ITEMS ids of an ordered history, most recent last', () => {
    const ids = Array.from({ length: 50 }, (_, i) => `i${i}`);
    expect(HISTORY_LOG_ITEMS).toBe(20);
    expect(lastHistoryItems(timed(ids))).toEqual(ids.slice(30));
    expect(lastHistoryItems(timed(['a', 'b']))).toEqual(['a', 'b']);
    expect(lastHistoryItems([])).toEqual([]);
  });

  it('orders an unordered history by timestamp (stable) before taking the most recent', () => {
    // Sent newest first: the server reads it oldest first, and so does the log.
    expect(lastHistoryItems(timed(['c', 'b', 'a'], [30, 20, 10]), 2)).toEqual(['b', 'c']);
    // Equal timestamps keep the order sent.
    expect(lastHistoryItems(timed(['x', 'y', 'z', 'w'], [5, 5, 1, 5]), 3)).toEqual(['x', 'y', 'w']);
    expect(lastHistoryItems(timed(['x', 'y', 'z', 'w'], [5, 5, 1, 5]), 10)).toEqual(['z', 'x', 'y', 'w']);
    expect(lastHistoryItems(timed(['b', 'a'], [2, 1]), 0)).toEqual([]);
    // Against a full sort, on random histories.
    let seed = 7;
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let t = 0; t < 50; t++) {
      const n = Math.floor(rnd() * 60);
      const h = Array.from({ length: n }, (_, i) => ({ item_id: `i${i}`, timestamp_ms: Math.floor(rnd() * 20) }));
      const sorted = h
        .map((x, i) => ({ ...x, i }))
        .sort((a, b) => a.timestamp_ms - b.timestamp_ms || a.i - b.i)
        .map((x) => x.item_id);
      expect(lastHistoryItems(h)).toEqual(sorted.slice(-20));
    }
  });

  it('the hooks log the bounded history of each answered request', async () => {
    const store = new FakeStore();
    const log = newLog(store, { environment: 'production' });
    await log.start();
    // onRecommend never consults the pool.
    const hooks = telemetryHooks({ slot: {} as ModelPool, log });
    const history = timed(
      Array.from({ length: 25 }, (_, i) => `i${i}`),
      Array.from({ length: 25 }, (_, i) => 1000 + i),
    );
    const req: RecommendRequest = { user_id: 'u', history, k: 1, exclude_item_ids: [] };
    const res = {
      items: [{ item_id: 'a', score: 1 }],
      model_name: 'm',
      model_version: '3',
      dataset_name: 'd',
      dataset_version: 'dv',
      request_id: 'r1',
      fallback: false,
      fallback_reason: 'FALLBACK_REASON_UNSPECIFIED' as const,
      history_source: 'HISTORY_SOURCE_REQUEST' as const,
      online_store_degraded: false,
      route: 'single',
      stages: [{ name: 'model', graph_sha256: 'ab'.repeat(32), latency_ms: 0.5 }],
    };
    hooks.onRecommend!(req, res, T0, 1, 'Recommend');
    hooks.onRecommend!({ ...req, history: [] }, { ...res, request_id: 'r2' }, T0, 1, 'Recommend');
    await log.close();
    const lines = [...store.objects.values()].flatMap((b) =>
      b
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as object),
    );
    expect(lines).toEqual([
      expect.objectContaining({
        request_id: 'r1',
        history_len: 25,
        history_items: history.slice(5).map((h) => h.item_id),
      }),
      expect.objectContaining({ request_id: 'r2', history_len: 0, history_items: [] }),
    ]);
    expect([...store.objects.keys()]).toEqual([expect.stringMatching(/^recommend\/model=m\/env=production\/date=/)]);
  });

  it('reads a record without history_items (an old chunk) as []', () => {
    const line = JSON.parse(JSON.stringify(rec(1).record)) as Record<string, unknown>;
    delete line.history_items;
    expect(historyItemsOf(line)).toEqual([]);
    expect(historyItemsOf(rec(3).record as { history_items: string[] })).toEqual(['h3']);
    expect(historyItemsOf({ history_items: null })).toEqual([]);
  });
});

test('ships by size without awaiting on append, and by time', async () => {
  const store = new FakeStore();
  const log = newLog(store, { flushIntervalMs: 30 });
  await log.start();
  log.append(rec(1));
  expect(store.attempts).toHaveLength(0); // append does no I/O
  log.append(rec(2)); // a full batch: sealed and shipped right after this tick
  await waitFor(() => store.records().length === 2);
  log.append(rec(3)); // half a batch: shipped by the timer
  await waitFor(() => store.records().length === 3);
  await log.close();
  expect(log.stats).toMatchObject({ recordsShipped: 3, chunksShipped: 2, buffered: 0, chunksSpilled: 0 });
});

test('while the store is down, memory stays bounded and chunks spill to disk; on recovery all ship oldest first, same keys', async () => {
  const store = new FakeStore();
  const spilled: string[] = [];
  const log = newLog(store, {
    observer: { shipped: () => undefined, spilled: (k) => spilled.push(k), uploadFailed: () => undefined },
  });
  await log.start();
  store.down = true;
  for (let i = 0; i < 10; i++) {
    log.append(rec(i));
    await log.flush();
  }
  expect(log.stats.chunksInMemory).toBeLessThanOrEqual(1);
  expect(log.stats.chunksSpilled).toBeGreaterThanOrEqual(3);
  expect((await fs.readdir(dir)).filter((n) => n.endsWith('.chunk'))).toHaveLength(log.stats.chunksSpilled);
  expect(spilled.length).toBe(log.stats.chunksSpilled);
  const failedKeys = new Set(store.attempts);

  store.down = false;
  await waitFor(() => store.records().length === 10);
  await log.close();
  expect(store.records().map((r) => r.request_id)).toEqual([...Array(10).keys()].map((i) => `r${i}`));
  // Retries wrote the keys that failed before (idempotent), and every chunk has its own key.
  for (const k of failedKeys) expect(store.objects.has(k)).toBe(true);
  expect(store.objects.size).toBe(10);
  expect((await fs.readdir(dir)).filter((n) => n.endsWith('.chunk'))).toHaveLength(0);
});

test('close() with the store still down keeps every record on disk, and the next server ships them', async () => {
  const store = new FakeStore();
  store.down = true;
  const first = newLog(store, { serverId: 'first', maxChunksInMemory: 100 });
  await first.start();
  for (let i = 0; i < 5; i++) first.append(rec(i));
  first.append(fb(99));
  const left = await first.close(50);
  expect(left).toMatchObject({ recordsShipped: 0, chunksInMemory: 0, buffered: 0 });
  expect(left.chunksSpilled).toBeGreaterThan(0);

  store.down = false;
  const second = newLog(store, { serverId: 'second' });
  await second.start();
  await waitFor(() => store.records().length === 6);
  await second.close();
  expect([...store.objects.keys()].every((k) => k.includes('/first-'))).toBe(true);
  expect(
    store
      .records()
      .map((r) => r.request_id)
      .sort(),
  ).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r99']);
});

test('a retried upload that fails many times backs off instead of spinning', async () => {
  const store = new FakeStore();
  store.down = true;
  const log = newLog(store, { minRetryDelayMs: 50, maxRetryDelayMs: 50 });
  await log.start();
  log.append(rec(1));
  log.append(rec(2));
  await new Promise((r) => setTimeout(r, 220));
  expect(store.attempts.length).toBeGreaterThanOrEqual(2);
  expect(store.attempts.length).toBeLessThanOrEqual(7);
  store.down = false;
  await log.close();
  expect(store.records()).toHaveLength(2);
});

test('an upload that hangs times out, and close() keeps its deadline and spills the rest', async () => {
  const hanging: ChunkUploader = { put: () => new Promise<void>(() => undefined) };
  const log = newLog(new FakeStore(), { uploader: hanging, uploadTimeoutMs: 20, maxChunksInMemory: 100 });
  await log.start();
  for (let i = 0; i < 6; i++) log.append(rec(i));
  const started = Date.now();
  const left = await log.close(150);
  expect(Date.now() - started).toBeLessThan(1000);
  expect(left).toMatchObject({ recordsShipped: 0, chunksInMemory: 0, buffered: 0 });
  const files = (await fs.readdir(dir)).filter((n) => n.endsWith('.chunk'));
  expect(files).toHaveLength(left.chunksSpilled);
  const bodies = await Promise.all(files.map((f) => fs.readFile(path.join(dir, f), 'utf8')));
  // One header line per file, then the records.
  expect(bodies.map((b) => b.trim().split('\n').length - 1).reduce((a, b) => a + b, 0)).toBe(6);
});

test('a sealed chunk is on disk before it ships: a log abandoned without close() (SIGKILL) loses only the unsealed', async () => {
  const store = new FakeStore();
  store.down = true;
  // Plenty of room in memory: nothing reaches the disk for want of memory.
  const first = newLog(store, { serverId: 'killed', maxChunksInMemory: 100, minRetryDelayMs: 60_000 });
  await first.start();
  for (let i = 0; i < 7; i++) {
    first.append(rec(i));
    if (i % 2 === 1 || i === 6) await first.flush(); // sealed: chunks of 2, 2, 2 and 1 records
  }
  first.append(rec(100)); // appended after the last seal: the bound of what a kill may lose
  const files = (await fs.readdir(dir)).filter((n) => n.endsWith('.chunk'));
  expect(files).toHaveLength(4);
  // Each file is a complete chunk with the checksum of its body.
  for (const f of files) {
    const text = await fs.readFile(path.join(dir, f), 'utf8');
    expect(typeof parseSpillFile(text)).toBe('object');
    expect(JSON.parse(text.slice(0, text.indexOf('\n')))).toMatchObject({
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  }
  // `first` is never closed, as after kill -9. The next server on the directory ships everything it had sealed.
  store.down = false;
  const second = newLog(store, { serverId: 'next' });
  await second.start();
  await waitFor(() => store.records().length === 7);
  await second.close();
  expect(
    store
      .records()
      .map((r) => r.request_id)
      .sort(),
  ).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
  expect([...store.objects.keys()].every((k) => k.includes('/killed-'))).toBe(true);
  expect(first.stats).toMatchObject({ buffered: 1 });
});

test('spill files that are not chunks are set aside as .bad, and the others still ship', async () => {
  const store = new FakeStore();
  store.down = true;
  const writer = newLog(store, { serverId: 'w', maxChunksInMemory: 100 });
  await writer.start();
  for (let i = 0; i < 4; i++) {
    writer.append(rec(i));
    if (i % 2 === 1) await writer.flush();
  }
  await writer.close(0); // two good chunks on disk
  const good = (await fs.readdir(dir)).sort();
  expect(good).toHaveLength(2);
  const goodText = await fs.readFile(path.join(dir, good[0]!), 'utf8');
  // Sorted among the good ones: an empty file, a truncated copy, one with a changed body, a header that is no JSON.
  await fs.writeFile(path.join(dir, '000000000000001-empty.chunk'), '');
  await fs.writeFile(path.join(dir, '000000000000002-truncated.chunk'), goodText.slice(0, goodText.length - 20));
  await fs.writeFile(path.join(dir, '000000000000003-changed.chunk'), goodText.replace('"u0"', '"u9"'));
  await fs.writeFile(path.join(dir, '999999999999999-header.chunk'), '{not json\n{}\n');
  // A complete chunk a writer (with this pid: a predecessor, as pids repeat in containers) never renamed, and a
  // half-written one.
  const pending = `000000000000004-pending.chunk.${process.pid}.tmp`;
  const half = `000000000000005-half.chunk.${process.pid}.tmp`;
  const pendingText = goodText.replace(/w-00000000/g, 'p-00000000');
  await fs.writeFile(path.join(dir, pending), pendingText);
  await fs.writeFile(path.join(dir, half), goodText.slice(0, 30));

  store.down = false;
  const reports: string[] = [];
  const log = newLog(store, { serverId: 'next', onError: (m) => reports.push(m) });
  await log.start();
  await waitFor(() => store.objects.size === 3);
  const left = await log.close();
  expect(left).toMatchObject({ chunksSpilled: 0, badFiles: 5 });
  expect(store.records()).toHaveLength(6); // both good chunks and the salvaged one
  expect([...store.objects.keys()].some((k) => k.includes('/p-00000000'))).toBe(true);
  expect((await fs.readdir(dir)).sort()).toEqual([
    '000000000000001-empty.chunk.bad',
    '000000000000002-truncated.chunk.bad',
    '000000000000003-changed.chunk.bad',
    `${half}.bad`,
    '999999999999999-header.chunk.bad',
  ]);
  expect(reports.filter((r) => r.startsWith('set aside ')).sort()).toEqual([
    `set aside ${path.join(dir, '000000000000001-empty.chunk.bad')}: not a log chunk (empty file); shipping the others`,
    `set aside ${path.join(dir, '000000000000002-truncated.chunk.bad')}: not a log chunk (the body's sha256 does not match the header's (truncated or changed on disk)); shipping the others`,
    `set aside ${path.join(dir, '000000000000003-changed.chunk.bad')}: not a log chunk (the body's sha256 does not match the header's (truncated or changed on disk)); shipping the others`,
    `set aside ${path.join(dir, `${half}.bad`)}: not a log chunk (unfinished write: no header line); shipping the others`,
    `set aside ${path.join(dir, '999999999999999-header.chunk.bad')}: not a log chunk (the header line is not JSON); shipping the others`,
  ]);
});

test('spill files without a checksum (written before it was recorded) are still checked by their record count', () => {
  const header = (records: number) =>
    JSON.stringify({
      key: 'recommend/model=m/date=2026-11-22/hour=05/s-00000001.jsonl',
      kind: 'recommend',
      records,
      sealedAtMs: 1,
    });
  expect(parseSpillFile(`${header(2)}\n{"a":1}\n{"a":2}\n`)).toMatchObject({ records: 2 });
  expect(parseSpillFile(`${header(2)}\n{"a":1}\n`)).toBe('the header says 2 records, the body has 1 lines');
  expect(parseSpillFile(`${header(2)}\n{"a":1}\n{"a":`)).toBe(
    'the header says 2 records, the body has no final newline',
  );
  expect(parseSpillFile(header(1).replace('recommend/model', '../model') + '\n{}\n')).toMatch(/^bad key in the header/);
});
