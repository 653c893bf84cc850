/**
 * The online feature store against real Redis: a tiny model trained and registered by continuousTraining, served over
 * gRPC by a RecommenderCore whose store is the stack's Redis (the namespace is the test's own dataset, so runs never
 * collide). Events change the next recommendation; retries count once (history and popularity); dismissals are not
 * history; a store outage (our own redis-server, paused, killed and restarted on its port) keeps the tier answering
 * from the dataset fallback, marked degraded, without a failed call, and it recovers by itself; the backfill is
 * idempotent and a backfilled cold store serves exactly what the dataset fallback serves.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createClient } from 'redis';
import { createActivities } from '../../activities';
import type { BackfillFeaturesInput, BackfillFeaturesResult } from '../../activities/features';
import { localDataset } from '../../lib/dataset/cache';
import { config } from '../../lib/config';
import { objectStore } from '../../lib/object-store';
import { recommend, recommenderClient } from '../../serving/client';
import { backfillFeatures, openBackfillStore, type BackfillProgress } from '../../serving/feature-backfill';
import { featureKeys } from '../../serving/feature-layout';
import { HOUR_MS } from '../../serving/feature-rules';
import { registryLoader } from '../../serving/model-loader';
import { ModelPool } from '../../serving/model-pool';
import type {
  FeedbackRequest,
  FeedbackResponse,
  RecommendRequest,
  RecommendResponse__Output,
  RecommenderClient,
} from '../../serving/proto';
import { RecommenderCore, type ServiceHooks } from '../../serving/recommender-core';
import { connectOnlineStore, type RedisOnlineStore } from '../../serving/redis-store';
import { startServer, type RunningServer } from '../../serving/server';
import type { ContinuousTrainingResult } from '../../workflows/training-api';
import { uniqueName, useTemporal } from './stack';
import { trainTinyModel, waitFor } from './training-fixture';

/** The models' default history_len and the store's default N: parity with the dataset fallback needs them equal. */
const HISTORY_LEN = 50;
const temporal = useTemporal();

let trained: ContinuousTrainingResult;
let model: string;
let namespace: string;
let slot: ModelPool;
let store: RedisOnlineStore;
let running: RunningServer;
let client: RecommenderClient;
const storeUnavailable: string[] = [];
/** A raw client on the stack's Redis, to look at what the store wrote. */
const raw = createClient({ url: config().redisUrl });
/** From the dataset's Parquet files, read here independently of the server. */
let users: { id: string; recent: string[] }[];

async function readDataset(dir: string): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const f = (n: string) => `'${path.join(dir, n)}'`;
    const rows = (
      await conn.runAndReadAll(
        `SELECT u.user_id::VARCHAR, list(i.item_id::VARCHAR ORDER BY t.ts, t.item_idx)
         FROM read_parquet([${f('train.parquet')}, ${f('valid.parquet')}, ${f('test.parquet')}]) t
         JOIN read_parquet(${f('users.parquet')}) u USING (user_idx)
         JOIN read_parquet(${f('items.parquet')}) i USING (item_idx)
         GROUP BY u.user_id, t.user_idx ORDER BY t.user_idx`,
      )
    ).getRows();
    users = rows.map(([id, items]) => ({
      id: String(id),
      recent: (items as { items: unknown[] }).items.map(String).slice(-HISTORY_LEN),
    }));
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

beforeAll(async () => {
  ({ model, trained } = await trainTinyModel(temporal, 'it-online', { epochs: 1, history_len: HISTORY_LEN }));
  namespace = trained.dataset.name;
  await readDataset(await localDataset(trained.dataset.manifestUri));
  slot = new ModelPool(registryLoader());
  await slot.load({ name: model, alias: 'challenger' });
  store = await connectOnlineStore({ url: config().redisUrl, onConnectionChange: () => {} });
  expect(store.connected).toBe(true);
  const hooks: ServiceHooks = { onStoreUnavailable: (_op, reason) => storeUnavailable.push(reason) };
  running = await startServer({ slot, port: 0, core: new RecommenderCore(slot, { store, hooks }) });
  client = recommenderClient(running.address);
  await raw.connect();
});

afterAll(async () => {
  client?.close();
  await running?.shutdown(5000);
  await store?.close();
  if (raw.isOpen) {
    // The namespace is this run's own dataset: nothing else lives under it.
    for await (const keys of raw.scanIterator({ MATCH: featureKeys.pattern(namespace), COUNT: 1000 }))
      if (keys.length > 0) await raw.del(keys);
    raw.destroy();
  }
});

const req = (r: Partial<RecommendRequest>): RecommendRequest => ({
  user_id: 'nobody',
  history: [],
  k: 10,
  exclude_item_ids: [],
  ...r,
});
const ids = (res: { items: { item_id: string }[] }) => res.items.map((i) => i.item_id);

const fullEvent = (e: Partial<FeedbackRequest>): FeedbackRequest => ({
  request_id: '',
  user_id: 'nobody',
  item_id: '',
  event: 'FEEDBACK_EVENT_CLICK',
  timestamp_ms: 0,
  value: 0,
  event_id: '',
  ...e,
});

function sendFeedback(c: RecommenderClient, e: Partial<FeedbackRequest>): Promise<FeedbackResponse> {
  return new Promise((resolve, reject) =>
    c.Feedback(fullEvent(e), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

/** The answer to the same request with `history` sent in it (what the model makes of exactly that history). */
const withHistory = (user: string, items: string[], t0: number) =>
  recommend(client, req({ user_id: user, history: items.map((item_id, i) => ({ item_id, timestamp_ms: t0 + i })) }));

/** Every key of the namespace with its content (TTLs left out: they tick). */
async function dumpNamespace(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for await (const keys of raw.scanIterator({ MATCH: featureKeys.pattern(namespace), COUNT: 1000 }))
    for (const key of keys) {
      const type = await raw.type(key);
      if (type === 'list') out[key] = await raw.lRange(key, 0, -1);
      else if (type === 'zset') out[key] = await raw.zRangeWithScores(key, 0, -1);
      else out[key] = await raw.get(key);
    }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

describe('history from the store', () => {
  it('each click changes the next recommendation, which is what that history sent in the request gives', async () => {
    const visitor = uniqueName('visitor');
    const before = await recommend(client, req({ user_id: visitor }));
    expect(before).toMatchObject({
      history_source: 'HISTORY_SOURCE_NONE',
      fallback: true,
      online_store_degraded: false,
    });

    const clicks = users[0]!.recent.slice(-3);
    const t0 = Date.now() - 60_000;
    for (const [i, item] of clicks.entries()) {
      const r = await sendFeedback(client, {
        user_id: visitor,
        item_id: item,
        request_id: before.request_id,
        timestamp_ms: t0 + i,
      });
      expect(r).toEqual({ recorded_online: true, duplicate: false });
    }
    const after = await recommend(client, req({ user_id: visitor }));
    expect(after).toMatchObject({
      history_source: 'HISTORY_SOURCE_ONLINE_STORE',
      fallback: false,
      online_store_degraded: false,
    });
    expect(ids(after)).not.toEqual(ids(before));
    for (const item of clicks) expect(ids(after)).not.toContain(item);
    expect(after.items).toEqual((await withHistory('someone-else', clicks, t0)).items);

    // One more click, and the next answer moves again.
    const more = users[1]!.recent.at(-1)!;
    await sendFeedback(client, {
      user_id: visitor,
      item_id: more,
      event: 'FEEDBACK_EVENT_PURCHASE',
      timestamp_ms: t0 + 9,
    });
    const next = await recommend(client, req({ user_id: visitor }));
    expect(next.history_source).toBe('HISTORY_SOURCE_ONLINE_STORE');
    expect(ids(next)).not.toEqual(ids(after));
    expect(next.items).toEqual((await withHistory('someone-else', [...clicks, more], t0)).items);
    // The request's own history still wins.
    const own = await recommend(client, req({ user_id: visitor, history: [{ item_id: more, timestamp_ms: 1 }] }));
    expect(own.history_source).toBe('HISTORY_SOURCE_REQUEST');
  });

  it('keeps impressions, dismissals and low ratings out of the history, but records them; a good rating is history', async () => {
    const visitor = uniqueName('visitor');
    const items = users[2]!.recent.slice(-4);
    const t0 = Date.now() - 10_000;
    const sent = [
      { item_id: items[0], event: 'FEEDBACK_EVENT_IMPRESSION' },
      { item_id: items[1], event: 'FEEDBACK_EVENT_DISMISS' },
      { item_id: items[2], event: 'FEEDBACK_EVENT_RATING', value: 3 },
    ] as const;
    for (const [i, e] of sent.entries())
      expect(await sendFeedback(client, { user_id: visitor, timestamp_ms: t0 + i, ...e })).toEqual({
        recorded_online: true,
        duplicate: false,
      });
    expect(await store.recentHistory(namespace, visitor)).toEqual({ status: 'ok', items: [] });
    expect(await raw.lLen(featureKeys.other(namespace, visitor))).toBe(3);
    expect((await recommend(client, req({ user_id: visitor }))).history_source).toBe('HISTORY_SOURCE_NONE');

    await sendFeedback(client, {
      user_id: visitor,
      item_id: items[3],
      event: 'FEEDBACK_EVENT_RATING',
      value: 4,
      timestamp_ms: t0 + 5,
    });
    expect(await store.recentHistory(namespace, visitor)).toEqual({
      status: 'ok',
      items: [{ item_id: items[3], timestamp_ms: t0 + 5 }],
    });
    expect((await recommend(client, req({ user_id: visitor }))).history_source).toBe('HISTORY_SOURCE_ONLINE_STORE');
    // The user's lists expire (30 days by default), refreshed by each write.
    expect(await raw.ttl(featureKeys.history(namespace, visitor))).toBeGreaterThan(29 * 86_400);
  });

  it('keeps the last N interest events by time, whatever order they arrive in', async () => {
    const visitor = uniqueName('visitor');
    const items = users[3]!.recent;
    const t0 = Date.now() - 3_600_000;
    // Sent newest first, then one late event older than everything: the store orders them by time.
    const events = Array.from({ length: 55 }, (_, i) => ({
      eventId: `late-${i}`,
      userId: visitor,
      itemId: items[i % items.length]!,
      event: 'FEEDBACK_EVENT_CLICK',
      timeMs: t0 + (55 - i) * 1000,
      value: 0,
    }));
    const outcomes = await store.record(namespace, events);
    expect(outcomes.every((o) => o.status === 'recorded' && !o.duplicate)).toBe(true);
    const read = await store.recentHistory(namespace, visitor);
    if (read.status !== 'ok') throw new Error(read.reason);
    expect(read.items).toHaveLength(50);
    expect(read.items.map((h) => h.timestamp_ms)).toEqual(Array.from({ length: 50 }, (_, i) => t0 + (6 + i) * 1000));
    // Too old for the 50 kept: recorded (not a duplicate), not history.
    const old = await store.record(namespace, [{ ...events[0]!, eventId: 'too-old', timeMs: t0 }]);
    expect(old).toEqual([{ status: 'recorded', duplicate: false }]);
    expect(await store.recentHistory(namespace, visitor)).toEqual(read);
  });
});

describe('retries', () => {
  let reader: RedisOnlineStore | undefined;
  afterAll(() => reader?.close());

  it('count once: neither the history nor the popularity moves', async () => {
    const visitor = uniqueName('visitor');
    const [item, other] = [...new Set(users[4]!.recent)].slice(-2);
    const now = Date.now();
    // Popularity in the hour of `now`, as stored, and as read (decayed) by a store that does not cache it.
    const bucket = featureKeys.popularity(namespace, Math.floor(now / HOUR_MS));
    const countOf = async (id: string) => (await raw.zScore(bucket, id)) ?? 0;
    reader = await connectOnlineStore({
      url: config().redisUrl,
      popularCacheMs: 0,
      onConnectionChange: () => {},
    });
    const popularScore = async (id: string) => {
      const p = await reader!.popular(namespace, 1000);
      if (p.status !== 'ok') throw new Error(p.reason);
      return p.items.find((x) => x.itemId === id)?.score;
    };
    const before = { item: await countOf(item!), other: await countOf(other!) };

    const click: Partial<FeedbackRequest> = {
      user_id: visitor,
      item_id: item,
      event_id: randomUUID(),
      timestamp_ms: now,
    };
    expect(await sendFeedback(client, click)).toEqual({ recorded_online: true, duplicate: false });
    const afterFirst = await dumpNamespace();
    const scoreAfterFirst = await popularScore(item!);
    expect(scoreAfterFirst).toBeGreaterThan(0);
    // Retried as such, and inside a batch with itself: one pipeline, two outcomes.
    expect(await sendFeedback(client, click)).toEqual({ recorded_online: true, duplicate: true });
    const core = new RecommenderCore(slot, { store });
    const batch = await core.feedback([fullEvent(click), fullEvent(click)], 'Feedback');
    expect(batch).toEqual({
      ok: true,
      value: [
        { recorded_online: true, duplicate: true },
        { recorded_online: true, duplicate: true },
      ],
    });
    expect(await dumpNamespace()).toEqual(afterFirst);
    // The same list, without a round trip, for the hot path.
    expect(reader.cachedPopular(namespace)?.find((x) => x.itemId === item)?.score).toBe(scoreAfterFirst);
    // Unchanged but for the decay of the seconds in between (one more count would add the hour's weight, >= 0.5).
    expect(await popularScore(item!)).toBeCloseTo(scoreAfterFirst!, 3);

    // Without an event_id: the request id, item, event and time make the identity.
    const implicit: Partial<FeedbackRequest> = {
      user_id: visitor,
      item_id: other,
      request_id: 'req-1',
      timestamp_ms: now,
    };
    expect(await sendFeedback(client, implicit)).toEqual({ recorded_online: true, duplicate: false });
    expect(await sendFeedback(client, implicit)).toEqual({ recorded_online: true, duplicate: true });
    expect(await sendFeedback(client, { ...implicit, timestamp_ms: now + 1 })).toEqual({
      recorded_online: true,
      duplicate: false,
    });

    expect(await store.recentHistory(namespace, visitor)).toEqual({
      status: 'ok',
      items: [
        { item_id: item, timestamp_ms: now },
        { item_id: other, timestamp_ms: now },
        { item_id: other, timestamp_ms: now + 1 },
      ],
    });
    expect(await countOf(item!)).toBe(before.item + 1);
    expect(await countOf(other!)).toBe(before.other + 2);
    // The bucket expires once out of the popularity window (72 h by default).
    expect(await raw.ttl(bucket)).toBeGreaterThan(71 * 3600);
    expect(await raw.ttl(bucket)).toBeLessThanOrEqual(74 * 3600);
  });
});

// --- our own Redis, to take it down -----------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

function pingRedis(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { stdio: 'ignore' },
  );
  await waitFor(`redis-server on port ${port}`, async () => ((await pingRedis(port)) ? true : undefined), 10_000);
  return child;
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe('a store outage', () => {
  let port: number;
  let redis: ChildProcess | undefined;
  let outageStore: RedisOnlineStore;
  let outageSlot: ModelPool;
  let outageServer: RunningServer;
  let outageClient: RecommenderClient;
  const changes: string[] = [];
  const unavailable: string[] = [];
  const errors: string[] = [];

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    outageStore = await connectOnlineStore({
      url: `redis://127.0.0.1:${port}`,
      onConnectionChange: (state, detail) => changes.push(`${state}: ${detail}`),
    });
    outageSlot = new ModelPool(registryLoader());
    await outageSlot.load({ name: model, alias: 'challenger' });
    const hooks: ServiceHooks = {
      onStoreUnavailable: (op, reason) => unavailable.push(`${op}: ${reason}`),
      onError: (method, code) => errors.push(`${method} ${code}`),
    };
    outageServer = await startServer({
      slot: outageSlot,
      port: 0,
      core: new RecommenderCore(outageSlot, { store: outageStore, hooks }),
    });
    outageClient = recommenderClient(outageServer.address);
  });

  afterAll(async () => {
    // Resumed first: a call still waiting on a paused Redis would hold the server's drain.
    if (redis && redis.signalCode === null && redis.exitCode === null) redis.kill('SIGCONT');
    outageClient?.close();
    await outageServer?.shutdown(5000);
    await outageStore?.close();
    if (redis) await stopRedis(redis);
  });

  /** `n` Recommend calls, `concurrency` at a time, each timed; any failed call fails the test. */
  async function burst(user: string, n: number, concurrency = 8) {
    const out: { res: RecommendResponse__Output; ms: number }[] = [];
    for (let i = 0; i < n; i += concurrency)
      out.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(concurrency, n - i) }, async () => {
            const t = performance.now();
            const res = await recommend(outageClient, req({ user_id: user }));
            return { res, ms: performance.now() - t };
          }),
        )),
      );
    return out;
  }

  it('answers from the dataset, marked degraded, while Redis hangs or is gone, and recovers when it returns', async () => {
    const user = users[5]!;
    // The dataset fallback's answer for this user: the same version with no store at all.
    const fallback = await new RecommenderCore(outageSlot).recommend(req({ user_id: user.id }), 'Recommend');
    if (!fallback.ok) throw new Error(fallback.message);
    expect(fallback.value.history_source).toBe('HISTORY_SOURCE_DATASET');

    const click = users[6]!.recent.at(-1)!;
    expect(await sendFeedback(outageClient, { user_id: user.id, item_id: click, timestamp_ms: Date.now() })).toEqual({
      recorded_online: true,
      duplicate: false,
    });
    const healthy = await recommend(outageClient, req({ user_id: user.id }));
    expect(healthy).toMatchObject({ history_source: 'HISTORY_SOURCE_ONLINE_STORE', online_store_degraded: false });

    const degradedAnswers = (answers: { res: RecommendResponse__Output; ms: number }[]) => {
      for (const { res } of answers) {
        expect(res).toMatchObject({ history_source: 'HISTORY_SOURCE_DATASET', online_store_degraded: true });
        // Concurrent calls are batched into one inference: the same items, scores equal up to float rounding.
        expect(ids(res)).toEqual(ids(fallback.value));
        res.items.forEach((it, i) => expect(it.score).toBeCloseTo(fallback.value.items[i]!.score, 5));
      }
    };

    // Hung: the connection stays open but nothing answers. Each read gives up after its 25 ms.
    redis!.kill('SIGSTOP');
    try {
      const hung = await burst(user.id, 24);
      degradedAnswers(hung);
      expect(Math.max(...hung.map((a) => a.ms))).toBeLessThan(1000);
      // A write does not wait longer than its own bound (200 ms) either; the event stays in the feedback log.
      expect(await sendFeedback(outageClient, { user_id: user.id, item_id: click, event_id: 'while-hung' })).toEqual({
        recorded_online: false,
        duplicate: false,
      });
    } finally {
      redis!.kill('SIGCONT');
    }
    await waitFor('the store to answer again after the pause', async () => {
      const r = await recommend(outageClient, req({ user_id: user.id }));
      return r.online_store_degraded ? undefined : r;
    });

    // Gone: reads answer at once, without waiting for the network; feedback is answered, not recorded online.
    await stopRedis(redis!);
    const gone = await burst(user.id, 40);
    degradedAnswers(gone);
    expect(Math.max(...gone.map((a) => a.ms))).toBeLessThan(1000);
    expect(await sendFeedback(outageClient, { user_id: user.id, item_id: click, event_id: 'during-outage' })).toEqual({
      recorded_online: false,
      duplicate: false,
    });
    expect(unavailable.some((u) => u.startsWith('read: '))).toBe(true);
    expect(unavailable.some((u) => u.startsWith('write: '))).toBe(true);
    expect(outageStore.connected).toBe(false);

    // Back on the same port (empty: no persistence): the client reconnects by itself.
    redis = await startRedis(port);
    const back = await waitFor(
      'the store to reconnect',
      async () => {
        const r = await recommend(outageClient, req({ user_id: user.id }));
        return r.online_store_degraded ? undefined : r;
      },
      15_000,
    );
    expect(back.history_source).toBe('HISTORY_SOURCE_DATASET'); // the new Redis is empty
    expect(await sendFeedback(outageClient, { user_id: user.id, item_id: click, event_id: 'after-outage' })).toEqual({
      recorded_online: true,
      duplicate: false,
    });
    expect((await recommend(outageClient, req({ user_id: user.id }))).history_source).toBe(
      'HISTORY_SOURCE_ONLINE_STORE',
    );
    expect(errors).toEqual([]);
    expect(changes.some((c) => c.startsWith('down: '))).toBe(true);
    expect(changes.at(-1)).toBe('up: connected');
  });

  it('does not keep the serving tier from starting when Redis is down', async () => {
    const downPort = await freePort();
    const t = performance.now();
    const s = await connectOnlineStore({
      url: `redis://127.0.0.1:${downPort}`,
      connectWaitMs: 300,
      onConnectionChange: () => {},
    });
    try {
      expect(performance.now() - t).toBeLessThan(2000);
      expect(s.connected).toBe(false);
      expect(await s.recentHistory(namespace, 'u')).toMatchObject({ status: 'unavailable' });
      expect(
        await s.record(namespace, [
          { eventId: 'x', userId: 'u', itemId: 'i', event: 'FEEDBACK_EVENT_CLICK', timeMs: 1, value: 0 },
        ]),
      ).toEqual([{ status: 'unavailable', reason: expect.stringContaining('not connected') }]);
      expect(await s.popular(namespace, 5)).toMatchObject({ status: 'unavailable' });
      // ...and it connects once Redis is there.
      const late = await startRedis(downPort);
      try {
        expect(await s.waitUntilReady(10_000)).toBe(true);
        expect(await s.recentHistory(namespace, 'u')).toEqual({ status: 'ok', items: [] });
      } finally {
        await s.close();
        await stopRedis(late);
      }
    } finally {
      await s.close();
    }
  });
});

describe('backfill', () => {
  it('is idempotent, and a backfilled cold store serves what the dataset fallback serves', async () => {
    const backfillStore = await openBackfillStore({ url: config().redisUrl, onConnectionChange: () => {} });
    try {
      const run = async () => {
        const seen: BackfillProgress[] = [];
        const r = await backfillFeatures({
          datasetUri: trained.dataset.uri,
          store: backfillStore,
          objectStore: objectStore(),
          cacheDir: config().cacheDir,
          batchSize: 500,
          onProgress: (p) => seen.push(p),
        });
        return { r, seen };
      };
      const first = await run();
      const expectedEvents = users.reduce((n, u) => n + u.recent.length, 0);
      expect(first.r).toMatchObject({
        namespace,
        datasetVersion: trained.dataset.version,
        users: users.length,
        usersTotal: users.length,
        events: expectedEvents,
        eventsTotal: expectedEvents,
        recorded: expectedEvents,
        duplicates: 0,
        historyLength: HISTORY_LEN,
      });
      expect(first.seen.length).toBeGreaterThan(1);
      for (let i = 1; i < first.seen.length; i++) {
        expect(first.seen[i]!.users).toBeGreaterThan(first.seen[i - 1]!.users);
        expect(first.seen[i]!.events).toBeGreaterThan(first.seen[i - 1]!.events);
      }
      const afterFirst = await dumpNamespace();

      const second = await run();
      expect(second.r).toMatchObject({ events: expectedEvents, recorded: 0, duplicates: expectedEvents });
      expect(await dumpNamespace()).toEqual(afterFirst);

      // Every user's store history is the dataset's latest, in the dataset's order.
      for (const u of users.slice(0, 40)) {
        const read = await store.recentHistory(namespace, u.id);
        if (read.status !== 'ok') throw new Error(read.reason);
        expect(read.items.map((h) => h.item_id)).toEqual(u.recent);
      }
      // The same answers as the dataset fallback, now from the store.
      const noStore = new RecommenderCore(slot);
      for (const u of users.slice(0, 40)) {
        const fromStore = await recommend(client, req({ user_id: u.id, k: 20 }));
        const fromDataset = await noStore.recommend(req({ user_id: u.id, k: 20 }), 'Recommend');
        if (!fromDataset.ok) throw new Error(fromDataset.message);
        expect(fromStore.history_source).toBe('HISTORY_SOURCE_ONLINE_STORE');
        expect(fromDataset.value.history_source).toBe('HISTORY_SOURCE_DATASET');
        expect(fromStore.items).toEqual(fromDataset.value.items);
      }
    } finally {
      await backfillStore.close();
    }
    expect(storeUnavailable).toEqual([]);
  });

  it('runs as an activity: heartbeats its progress, resumes from the last heartbeat, stops when cancelled', async () => {
    const { backfillFeatures: activity } = createActivities();
    const run = (input: BackfillFeaturesInput, env = new MockActivityEnvironment()) =>
      env.run<[BackfillFeaturesInput], BackfillFeaturesResult, typeof activity>(activity, input);
    const total = users.reduce((n, u) => n + u.recent.length, 0);
    const before = await dumpNamespace();

    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const r = await run({ datasetUri: trained.dataset.uri }, env);
    expect(r).toMatchObject({ namespace, users: users.length, events: total, recorded: 0, duplicates: total });
    expect(beats.length).toBeGreaterThan(0);

    // A retry resumes after the users its last heartbeat reported, and keeps the counts cumulative.
    const previous = {
      users: 100,
      usersTotal: users.length,
      events: 3000,
      eventsTotal: total,
      recorded: 0,
      duplicates: 3000,
    };
    const resumed = await run(
      { datasetUri: trained.dataset.uri },
      new MockActivityEnvironment({ heartbeatDetails: previous }),
    );
    const rest = users.slice(100).reduce((n, u) => n + u.recent.length, 0);
    expect(resumed).toMatchObject({
      resumedAtUser: 100,
      users: users.length,
      events: 3000 + rest,
      duplicates: 3000 + rest,
    });

    const cancelled = new MockActivityEnvironment();
    const pending = run({ datasetUri: trained.dataset.uri }, cancelled);
    cancelled.cancel();
    await expect(pending).rejects.toBeInstanceOf(CancelledFailure);

    const bad = await run({ datasetUri: 's3://recsys/not-a-dataset/' }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ApplicationFailure);
    expect(bad).toMatchObject({ type: 'DatasetRefError', nonRetryable: true });
    const missing = await run({ datasetUri: `s3://recsys/datasets/${namespace}/no-such-version/` }).catch(
      (e: unknown) => e,
    );
    expect(missing).toMatchObject({ type: 'DatasetNotFound', nonRetryable: true });
    expect(await dumpNamespace()).toEqual(before);
  });
});
