/**
 * Online path benchmark (issue 13), figures printed, never asserted:
 *   1. Recommend with the history in the request, read from Redis (user id only) or from the model's dataset (user
 *      id only, not in Redis): QPS, p50, p99 at concurrency 1/16/64, same model, same server process, same run, and
 *      the cost of the Redis read as a ratio. All three rank the same 20 items per request (checked).
 *   2. HTTP/JSON vs gRPC on that server, history in the request, and each against its protocol's empty handler.
 *   3. Events ingested per second into Redis: gRPC Feedback, HTTP /v1/events single and batch of 100; checked in
 *      Redis afterwards.
 *   npx tsx bench/online-path.ts [seconds per cell = 5]
 *
 * Needs no stack: it starts its own redis-server (Debian's, from `make setup`) on a free loopback port without
 * persistence and stops it at the end, so the stack's Redis is never touched. Every server and every load runs in
 * its own process; the load generators are ours (bench/online-load.ts).
 */
import { createClient } from 'redis';
import { featureKeys } from '../serving/feature-layout';
import { httpRecommend } from '../serving/http/client';
import { recommend, recommenderClient } from '../serving/client';
import { eventIdOf } from '../serving/recommender-core';
import { connectOnlineStore } from '../serving/redis-store';
import type { RecommendResponse__Output } from '../serving/proto';
import { machine } from './common';
import {
  benchEvent,
  benchGraph,
  benchNamespace,
  eventUserId,
  EXPECTED_SOURCE,
  ONLINE_ITEMS,
  prefillEvents,
  storeUserId,
  VARIANTS,
  variantRequests,
  type Variant,
} from './online-fixture';
import type { LoadKind, OnlineLoadSpec } from './online-load';
import {
  runOnlineLoad,
  startEmptyHttpServer,
  startOnlineServer,
  startRedis,
  type BenchServerProcess,
} from './online-procs';
import type { ServerStats } from './online-servers';
import { printOnlineReport, type Cell, type EventCell, type OnlineReport } from './online-table';
import { benchRequests, K, type BenchGraph } from './serving-fixture';
import type { LoadResult } from './serving-load';
import { startTsServer } from './serving-procs';

const CONCURRENCY = [1, 16, 64];
const EVENT_CONCURRENCY = 16;
const EVENT_BATCH = 100;
const WARMUP_S = 1;

/** The benchmark's own store connections report a lost connection only (the server's are its own business). */
const quiet = (state: 'up' | 'down', detail: string) => {
  if (state === 'down') console.error(`online-path: Redis down: ${detail}`);
};

/** Writes each store user's history (request r's 20 items) into Redis, then reads every one back. */
async function prefill(redisUrl: string, g: BenchGraph): Promise<void> {
  const ns = benchNamespace(g);
  const store = await connectOnlineStore({
    url: redisUrl,
    writeTimeoutMs: 30_000,
    timeoutMs: 5_000,
    onConnectionChange: quiet,
  });
  try {
    const events = prefillEvents(g.n_items);
    for (let i = 0; i < events.length; i += 1000) {
      // History only, as the backfill loads it: the bench's popularity is never read.
      const outcomes = await store.record(ns, events.slice(i, i + 1000), { countPopularity: false });
      const bad = outcomes.find((o) => o.status !== 'recorded' || o.duplicate);
      if (bad) throw new Error(`prefilling Redis failed at event ${i}: ${JSON.stringify(bad)}`);
    }
    // The store variant must rank exactly what the request variant sends.
    for (const [r, req] of benchRequests(g.n_items).entries()) {
      const read = await store.recentHistory(ns, storeUserId(r));
      const got = read.status === 'ok' ? read.items.map((h) => h.item_id).join(',') : read.reason;
      const want = req.history.map((h) => h.item_id).join(',');
      if (got !== want) throw new Error(`Redis holds for ${storeUserId(r)} [${got}], not the request's [${want}]`);
    }
  } finally {
    await store.close();
  }
}

/**
 * The history read by itself: RedisOnlineStore.recentHistory of the store users, one at a time, from this (otherwise
 * idle) process against the same Redis, for `seconds`: what one read costs without a server around it.
 */
async function readAlone(redisUrl: string, g: BenchGraph, seconds: number): Promise<LoadResult> {
  const ns = benchNamespace(g);
  const store = await connectOnlineStore({ url: redisUrl, onConnectionChange: quiet });
  try {
    const users = benchRequests(g.n_items).map((_, r) => storeUserId(r));
    const lat: number[] = [];
    let errors = 0;
    const end = performance.now() + seconds * 1000;
    for (let i = 0, t = performance.now(); t < end; i++) {
      const read = await store.recentHistory(ns, users[i % users.length]!);
      if (read.status !== 'ok') errors++;
      const now = performance.now();
      lat.push(now - t);
      t = now;
    }
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
    return { calls: lat.length, errors, qps: lat.length / seconds, p50: q(0.5), p99: q(0.99) };
  } finally {
    await store.close();
  }
}

const ids = (res: RecommendResponse__Output) => res.items.map((i) => i.item_id).join(',');

function expectAnswer(who: string, res: RecommendResponse__Output, source: string): void {
  if (res.history_source !== source || res.fallback || res.items.length !== K || res.online_store_degraded)
    throw new Error(
      `${who}: history_source ${res.history_source}, fallback ${res.fallback}, ${res.items.length} items, ` +
        `store degraded ${res.online_store_degraded}; the variant needs ${source} and ${K} items of the model`,
    );
}

/**
 * One real call per variant before measuring: each must say the history source it claims, and all must return the
 * same items (the same 20 history items ranked by the same model), over gRPC and over HTTP.
 */
async function checkVariants(server: BenchServerProcess, nItems: number): Promise<void> {
  const client = recommenderClient(server.grpcAddress);
  try {
    const answers = new Map<string, string>();
    for (const v of VARIANTS) {
      const res = await recommend(client, variantRequests(nItems, v)[0]!);
      expectAnswer(`gRPC, ${v} variant`, res, EXPECTED_SOURCE[v]);
      answers.set(`gRPC ${v}`, ids(res));
    }
    const { body } = await httpRecommend(server.httpUrl, variantRequests(nItems, 'request')[0]!);
    expectAnswer('HTTP, request variant', body, EXPECTED_SOURCE.request);
    answers.set('HTTP request', ids(body));
    if (new Set(answers.values()).size !== 1)
      throw new Error(
        `the variants ranked different histories: ${[...answers].map(([k, v]) => `${k}: ${v}`).join('; ')}`,
      );
  } finally {
    client.close();
  }
}

/** What the server's counters say about the answers between two reads, when they are not all `expected`. */
function sourceNote(before: ServerStats, after: ServerStats, expected: string, label: string): string {
  const counts = Object.entries(after.sources)
    .map(([s, n]) => [s, n - (before.sources[s] ?? 0)] as const)
    .filter(([, n]) => n > 0);
  const total = counts.reduce((a, [, n]) => a + n, 0);
  const wrong = total - (counts.find(([s]) => s === expected)?.[1] ?? 0);
  const degraded = after.degraded - before.degraded;
  const errors = after.errors - before.errors;
  if (wrong === 0 && degraded === 0 && errors === 0 && total > 0) return '';
  const mix = counts.map(([s, n]) => `${s.replace('HISTORY_SOURCE_', '')} ${((100 * n) / total).toFixed(1)}%`);
  return ` !! ${label}: ${mix.join(', ') || 'no answers'}${degraded ? `, store degraded ${degraded}` : ''}${
    errors ? `, ${errors} errors` : ''
  }`;
}

async function recommendCell(
  server: BenchServerProcess,
  spec: OnlineLoadSpec,
  variant: Variant,
  label: string,
): Promise<Cell> {
  const before = await server.stats();
  const result = await runOnlineLoad(spec);
  return { result, note: sourceNote(before, await server.stats(), EXPECTED_SOURCE[variant], label) };
}

/** Counts the dedupe markers of a cell's events in Redis: one per event the store recorded. */
async function markersInRedis(redisUrl: string, ns: string, prefix: string, nItems: number): Promise<number> {
  // The marker of event 0 is `...:e:c:<prefix>-0` (eventIdOf, featureKeys); every event of the cell matches `...-*`.
  const first = featureKeys.seen(ns, eventIdOf(benchEvent(prefix, 0, nItems), 0));
  const pattern = `${first.slice(0, -1)}*`;
  const client = createClient({ url: redisUrl });
  client.on('error', () => {}); // a failure shows as the rejection below
  await client.connect();
  try {
    let n = 0;
    for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 10_000 })) n += keys.length;
    return n;
  } finally {
    client.destroy();
  }
}

async function eventCell(
  server: BenchServerProcess,
  redisUrl: string,
  g: BenchGraph,
  seconds: number,
  cell: { label: string; kind: LoadKind; batch: number },
): Promise<EventCell> {
  const prefix = `${cell.kind}-${cell.batch}-${Date.now().toString(36)}`;
  const result = await runOnlineLoad({
    kind: cell.kind,
    target: cell.kind.startsWith('grpc') ? server.grpcAddress : server.httpUrl,
    concurrency: EVENT_CONCURRENCY,
    warmupS: WARMUP_S,
    seconds,
    nItems: g.n_items,
    eventPrefix: prefix,
    batch: cell.batch,
  });
  const ns = benchNamespace(g);
  const sent = (result.okCalls ?? 0) * cell.batch;
  const landed = await markersInRedis(redisUrl, ns, prefix, g.n_items);
  // And through the store's own read: the cell's first user has a history now.
  const store = await connectOnlineStore({ url: redisUrl, timeoutMs: 5_000, onConnectionChange: quiet });
  const read = await store.recentHistory(ns, eventUserId(prefix, 0)).finally(() => store.close());
  const historyItems = read.status === 'ok' ? read.items.length : 0;
  if (landed === 0 || historyItems === 0)
    throw new Error(
      `${cell.label}: no event landed in Redis (${landed} markers of ${sent} events sent; ` +
        `history read: ${read.status === 'ok' ? `${historyItems} items` : read.reason})`,
    );
  return { label: cell.label, batch: cell.batch, result, sent, landed, historyItems };
}

async function measureOnline(
  server: BenchServerProcess,
  g: BenchGraph,
  seconds: number,
  redisUrl: string,
): Promise<Pick<OnlineReport, 'recommend' | 'http' | 'events'>> {
  await checkVariants(server, g.n_items);
  const timing = { warmupS: WARMUP_S, seconds, nItems: g.n_items };
  const recommendCells = new Map<Variant, Map<number, Cell>>(VARIANTS.map((v) => [v, new Map()]));
  const http = new Map<number, Cell>();
  // Variants interleaved per concurrency, so that a noisy neighbour on the shared cores hits them alike.
  for (const concurrency of CONCURRENCY) {
    for (const variant of VARIANTS) {
      const spec: OnlineLoadSpec = {
        kind: 'grpc-recommend',
        target: server.grpcAddress,
        concurrency,
        variant,
        ...timing,
      };
      recommendCells.get(variant)!.set(concurrency, await recommendCell(server, spec, variant, `gRPC ${variant}`));
    }
    const spec: OnlineLoadSpec = { kind: 'http-recommend', target: server.httpUrl, concurrency, ...timing };
    http.set(concurrency, await recommendCell(server, spec, 'request', 'HTTP'));
  }
  const events: EventCell[] = [];
  for (const cell of [
    { label: 'gRPC Feedback', kind: 'grpc-feedback' as const, batch: 1 },
    { label: 'HTTP POST /v1/events', kind: 'http-events' as const, batch: 1 },
    { label: `HTTP POST /v1/events batch`, kind: 'http-events' as const, batch: EVENT_BATCH },
  ])
    events.push(await eventCell(server, redisUrl, g, seconds, cell));
  return { recommend: recommendCells, http, events };
}

async function ceilings(kind: 'grpc' | 'http', g: BenchGraph, seconds: number): Promise<Map<number, LoadResult>> {
  const server = kind === 'grpc' ? await startTsServer('empty') : await startEmptyHttpServer();
  try {
    const target = 'address' in server ? server.address : server.httpUrl;
    const results = new Map<number, LoadResult>();
    for (const concurrency of CONCURRENCY)
      results.set(
        concurrency,
        await runOnlineLoad({
          kind: kind === 'grpc' ? 'grpc-recommend' : 'http-recommend',
          target,
          concurrency,
          warmupS: WARMUP_S,
          seconds,
          nItems: g.n_items,
        }),
      );
    return results;
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  if (!(seconds > 0)) throw new Error(`seconds per cell (argv[2]) must be a positive number, got ${process.argv[2]}`);
  const t0 = performance.now();
  const g = benchGraph(ONLINE_ITEMS);
  const redis = await startRedis();
  let measured: Pick<OnlineReport, 'recommend' | 'http' | 'events'>;
  let storeRead: LoadResult;
  try {
    await prefill(redis.url, g);
    storeRead = await readAlone(redis.url, g, Math.min(seconds, 2));
    const server = await startOnlineServer(g, redis.url);
    try {
      measured = await measureOnline(server, g, seconds, redis.url);
    } finally {
      await server.stop();
    }
  } finally {
    await redis.stop();
  }
  const grpcEmpty = await ceilings('grpc', g, seconds);
  const httpEmpty = await ceilings('http', g, seconds);
  printOnlineReport({
    machine: machine(),
    redis: redis.url,
    graph: g,
    seconds,
    warmupS: WARMUP_S,
    concurrency: CONCURRENCY,
    grpcEmpty,
    httpEmpty,
    eventConcurrency: EVENT_CONCURRENCY,
    storeRead,
    ...measured,
  });
  console.log(`  total run time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
