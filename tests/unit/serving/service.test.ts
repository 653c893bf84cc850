/**
 * The gRPC surface with stand-in models (no stack needed): status codes, fallbacks, exclusions, health, reflection,
 * and swapping versions while requests are in flight. The real ONNX path is in tests/integration/serving.test.ts.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { feedback, recommend, recommenderClient } from '../../../serving/client';
import { LoadedModel } from '../../../serving/loaded-model';
import type { ModelLoader } from '../../../serving/model-loader';
import type { ServableVersion } from '../../../serving/model-version';
import { ModelLoadError } from '../../../serving/errors';
import { ModelPool } from '../../../serving/model-pool';
import type { FeedbackRequest, RecommendRequest, RecommenderClient } from '../../../serving/proto';
import { startServer, type RunningServer } from '../../../serving/server';
import { sleep } from '../../../lib/time';
import { FakeRanker, fakeCatalog, fakeServable } from './fakes';

const servable = (version: string) => fakeServable('fake-model', version);

/** Versions 1, 2, 3 load; version 9 fails its checks. The alias `champion` points at `champion`. */
class FakeLoader implements ModelLoader {
  champion = '1';
  readonly loaded = new Map<string, LoadedModel>();
  resolve(ref: { name: string; alias?: string; version?: string }): Promise<ServableVersion> {
    return Promise.resolve(servable(ref.version ?? this.champion));
  }
  load(v: ServableVersion): Promise<LoadedModel> {
    if (v.version === '9')
      return Promise.reject(new ModelLoadError(`models:/${v.name}/9`, 'checksum', 'sha256 does not match'));
    const m = new LoadedModel(v, new FakeRanker(), fakeCatalog(), { maxHistory: 4, maxExcludes: 2 });
    this.loaded.set(v.version, m);
    return Promise.resolve(m);
  }
}

const ranker = (m: LoadedModel | undefined) => m!.ranker as FakeRanker;
const req = (r: Partial<RecommendRequest>): RecommendRequest => ({
  user_id: 'u1',
  history: [],
  k: 5,
  exclude_item_ids: [],
  ...r,
});
const ids = (res: { items: { item_id: string }[] }) => res.items.map((i) => i.item_id);

interface HealthClient extends grpc.Client {
  Check(
    req: { service: string },
    cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
  ): grpc.ClientUnaryCall;
}

let loader: FakeLoader;
let slot: ModelPool;
let running: RunningServer;
let client: RecommenderClient;
let health: HealthClient;
const feedbackSeen: FeedbackRequest[] = [];

beforeAll(async () => {
  loader = new FakeLoader();
  slot = new ModelPool(loader);
  running = await startServer({ slot, port: 0, hooks: { onFeedback: (e) => feedbackSeen.push(e) } });
  client = recommenderClient(running.address);
  const healthDef = protoLoader.loadSync('health/v1/health.proto', {
    includeDirs: [path.resolve(healthProto, '..', '..', '..')],
    keepCase: true,
    enums: String,
  });
  const Health = (
    grpc.loadPackageDefinition(healthDef) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    }
  ).grpc.health.v1.Health;
  health = new Health(running.address, grpc.credentials.createInsecure()) as unknown as HealthClient;
});

afterAll(async () => {
  client.close();
  health.close();
  await running.shutdown(1000);
});

const check = (service = '') =>
  new Promise<string>((resolve, reject) =>
    health.Check({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))),
  );

test('before a model is loaded: NOT_SERVING and UNAVAILABLE', async () => {
  expect(running.address).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(await check()).toBe('NOT_SERVING');
  expect(await check('recsys.v1.Recommender')).toBe('NOT_SERVING');
  await expect(recommend(client, req({}))).rejects.toMatchObject({
    code: grpc.status.UNAVAILABLE,
    details: 'no model version is loaded yet',
  });
});

test('once loaded: SERVING, and responses carry the lineage and a fresh request id', async () => {
  const out = await slot.load({ name: 'fake-model', alias: 'champion' });
  expect(out).toMatchObject({ swapped: true, previous: undefined });
  expect(await check()).toBe('SERVING');
  expect(await check('recsys.v1.Recommender')).toBe('SERVING');
  const a = await recommend(client, req({ user_id: 'new-user', history: [{ item_id: 'f', timestamp_ms: 0 }] }));
  const b = await recommend(client, req({ user_id: 'new-user', history: [{ item_id: 'f', timestamp_ms: 0 }] }));
  expect(a).toMatchObject({
    model_name: 'fake-model',
    model_version: '1',
    dataset_name: 'fake-data',
    dataset_version: 'data-1',
    fallback: false,
    fallback_reason: 'FALLBACK_REASON_UNSPECIFIED',
  });
  expect(a.request_id).toMatch(/^[0-9a-f-]{36}$/);
  expect(a.request_id).not.toBe(b.request_id);
  expect(ids(a)).toEqual(['a', 'b', 'c', 'd', 'e']);
  expect(a.items.map((i) => i.score)).toEqual([5, 4, 3, 2, 1]);
});

test('loading the version already serving is a no-op', async () => {
  const before = slot.active;
  expect(await slot.load({ name: 'fake-model', version: '1' })).toMatchObject({ swapped: false });
  expect(slot.active).toBe(before);
});

test('history and excluded items are never returned; the model sees the known history in time order', async () => {
  const res = await recommend(
    client,
    req({
      user_id: 'new-user',
      history: [
        { item_id: 'c', timestamp_ms: 200 },
        { item_id: 'unknown', timestamp_ms: 50 },
        { item_id: 'a', timestamp_ms: 100 },
      ],
      exclude_item_ids: ['d', 'not-an-item'],
    }),
  );
  expect(ids(res)).toEqual(['b', 'e']);
  expect(ranker(slot.active).calls.at(-1)).toEqual([1, 3]);
});

test('a known user without history in the request gets their dataset history', async () => {
  const res = await recommend(client, req({ user_id: 'u1', k: 2 }));
  expect(res.fallback).toBe(false);
  expect(ids(res)).toEqual(['c', 'd']);
  expect(ranker(slot.active).calls.at(-1)).toEqual([1, 2]);
  // ... also when none of the request's items is known.
  const res2 = await recommend(client, req({ user_id: 'u1', k: 2, history: [{ item_id: 'zzz', timestamp_ms: 0 }] }));
  expect(res2).toMatchObject({ fallback: false, items: res.items });
});

test('popularity fallback, with the reason', async () => {
  const calls = ranker(slot.active).calls.length;
  const cold = await recommend(client, req({ user_id: 'stranger', k: 3, exclude_item_ids: ['e'] }));
  expect(cold).toMatchObject({ fallback: true, fallback_reason: 'FALLBACK_REASON_NO_HISTORY' });
  expect(ids(cold)).toEqual(['f', 'd', 'c']);
  expect(cold.items[0]!.score).toBeCloseTo(0.3);
  const unknown = await recommend(client, req({ user_id: 'stranger', history: [{ item_id: 'zzz', timestamp_ms: 1 }] }));
  expect(unknown).toMatchObject({ fallback: true, fallback_reason: 'FALLBACK_REASON_NO_KNOWN_ITEMS' });
  expect(ranker(slot.active).calls.length).toBe(calls); // the model was not asked
});

test.each<[string, Partial<RecommendRequest>, string]>([
  ['missing user_id', { user_id: '' }, 'user_id is required'],
  ['k = 0', { k: 0 }, "k must be between 1 and 5 (the model's top_k), got 0"],
  ['k above top_k', { k: 6 }, "k must be between 1 and 5 (the model's top_k), got 6"],
  [
    'history too long',
    { history: ['a', 'b', 'c', 'd', 'e'].map((item_id) => ({ item_id, timestamp_ms: 0 })) },
    'history has 5 items; the limit is 4',
  ],
  ['too many excludes', { exclude_item_ids: ['a', 'b', 'c'] }, 'exclude_item_ids has 3 items; the limit is 2'],
])('INVALID_ARGUMENT: %s', async (_, change, details) => {
  await expect(recommend(client, req(change))).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details });
});

test('inference that throws fails that request with INTERNAL; the next one is served', async () => {
  ranker(slot.active).fail = true;
  await expect(recommend(client, req({}))).rejects.toMatchObject({
    code: grpc.status.INTERNAL,
    details: 'inference failed (models:/fake-model/1): boom: graph exploded',
  });
  // Fallbacks do not need the model.
  expect((await recommend(client, req({ user_id: 'stranger' }))).fallback).toBe(true);
  ranker(slot.active).fail = false;
  expect(ids(await recommend(client, req({})))).toEqual(['c', 'd', 'e']);
  expect(await check()).toBe('SERVING');
});

test('feedback is validated and handed to the hook', async () => {
  const event: FeedbackRequest = {
    request_id: 'r-1',
    user_id: 'u1',
    item_id: 'c',
    event: 'FEEDBACK_EVENT_PURCHASE',
    timestamp_ms: 1_700_000_000_000,
    value: 9.99,
    event_id: '',
  };
  await feedback(client, event);
  expect(feedbackSeen).toEqual([event]);
  await expect(feedback(client, { ...event, event: 'FEEDBACK_EVENT_UNSPECIFIED' })).rejects.toMatchObject({
    code: grpc.status.INVALID_ARGUMENT,
    details: expect.stringMatching(
      /^event must be one of FEEDBACK_EVENT_IMPRESSION, .* got FEEDBACK_EVENT_UNSPECIFIED$/,
    ),
  });
  await expect(feedback(client, { ...event, item_id: '' })).rejects.toMatchObject({ details: 'item_id is required' });
});

test('swapping versions while requests are in flight fails none; the old graph is freed after its last request', async () => {
  const v1 = slot.active!;
  ranker(v1).delayMs = 20;
  const callsBefore = ranker(v1).calls.length;
  const fire = (n: number) => Array.from({ length: n }, (_, i) => sleep(i).then(() => recommend(client, req({}))));
  const before = fire(50);
  // Swap only once a request is inside version 1's graph, so the swap is certain to overlap one (a loaded machine
  // can delay every timer past a fixed wait).
  while (ranker(v1).calls.length === callsBefore) await sleep(1);
  loader.champion = '2';
  const swap = await slot.load({ name: 'fake-model', alias: 'champion' });
  expect(swap).toMatchObject({ swapped: true, previous: 'models:/fake-model/1' });
  const after = fire(50);
  const inflight = [...before, ...after];
  const results = await Promise.allSettled(inflight);
  expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  const versions = results.map((r) => (r.status === 'fulfilled' ? r.value.model_version : ''));
  expect(new Set(versions)).toEqual(new Set(['1', '2']));
  // Each response is entirely one version's: lineage and items agree.
  for (const r of results)
    if (r.status === 'fulfilled') expect(r.value.dataset_version).toBe(`data-${r.value.model_version}`);
  expect(ranker(v1).disposed).toBe(true);
  expect(ranker(slot.active).disposed).toBe(false);
});

test('a version that fails its checks is not swapped in; the serving one keeps serving', async () => {
  const err = await slot.load({ name: 'fake-model', version: '9' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ModelLoadError);
  expect(slot.lastError).toMatchObject({ model: 'models:/fake-model/9', message: expect.stringContaining('checksum') });
  expect(slot.active?.version.version).toBe('2');
  expect((await recommend(client, req({}))).model_version).toBe('2');
  expect(await check()).toBe('SERVING');
});

test('reflection lists the services', async () => {
  const def = protoLoader.loadSync('grpc/reflection/v1/reflection.proto', {
    includeDirs: [path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto')],
    keepCase: true,
  });
  const Reflection = (
    grpc.loadPackageDefinition(def) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    }
  ).grpc.reflection.v1.ServerReflection;
  const rc = new Reflection(running.address, grpc.credentials.createInsecure()) as unknown as {
    ServerReflectionInfo(): grpc.ClientDuplexStream<
      { list_services: string },
      { list_services_response?: { service: { name: string }[] } }
    >;
    close(): void;
  };
  const stream = rc.ServerReflectionInfo();
  const names = await new Promise<string[]>((resolve, reject) => {
    stream.on('data', (res: { list_services_response?: { service: { name: string }[] } }) =>
      resolve((res.list_services_response?.service ?? []).map((s) => s.name)),
    );
    stream.on('error', reject);
    stream.write({ list_services: '' });
  });
  stream.end();
  rc.close();
  expect(names).toEqual(expect.arrayContaining(['recsys.v1.Recommender', 'grpc.health.v1.Health']));
});
