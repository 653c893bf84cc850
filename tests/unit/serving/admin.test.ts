/**
 * Several versions in one process with stand-in models (no stack needed): the model pool and the recsys.v1.Admin
 * service over gRPC. Idempotent loads and unloads, refusals, the traffic split, and changing the policy while
 * requests are in flight. The registry-backed path is in tests/integration/serving-admin.test.ts.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { adminClient, recommend, recommenderClient } from '../../../serving/client';
import { ModelLoadError } from '../../../serving/errors';
import { LoadedModel } from '../../../serving/loaded-model';
import type { ModelLoader } from '../../../serving/model-loader';
import type { ServableVersion } from '../../../serving/model-version';
import { ModelPool, PoolConflictError } from '../../../serving/model-pool';
import type { ModelRef } from '../../../serving/model-ref';
import type { AdminClient, RecommendRequest, RecommenderClient } from '../../../serving/proto';
import { startServer, type RunningServer } from '../../../serving/server';
import { PolicyError } from '../../../serving/traffic-policy';
import { FakeRanker, fakeCatalog, fakeServable } from './fakes';
import { call } from '../../grpc-calls';

const servable = (name: string, version: string) => fakeServable(name, version, version === '1' ? ['champion'] : []);

/** Any version loads (counting loads) except 9, which fails its checks; `champion` is version 1. */
class FakeLoader implements ModelLoader {
  loads = 0;
  delayMs = 0;
  resolve(ref: ModelRef): Promise<ServableVersion> {
    return Promise.resolve(servable(ref.name, ref.version ?? '1'));
  }
  load(v: ServableVersion): Promise<LoadedModel> {
    if (v.version === '9')
      return Promise.reject(new ModelLoadError(`models:/${v.name}/9`, 'checksum', 'sha256 does not match'));
    this.loads++;
    const ranker = new FakeRanker();
    ranker.delayMs = this.delayMs;
    return Promise.resolve(new LoadedModel(v, ranker, fakeCatalog()));
  }
}

const req = (user_id: string): RecommendRequest => ({
  user_id,
  history: [{ item_id: 'a', timestamp_ms: 1 }],
  k: 3,
  exclude_item_ids: [],
});
const ranker = (m: LoadedModel | undefined) => m!.ranker as FakeRanker;

describe('ModelPool', () => {
  let loader: FakeLoader;
  let pool: ModelPool;
  beforeEach(() => {
    loader = new FakeLoader();
    pool = new ModelPool(loader);
  });
  afterEach(() => pool.close());

  test('the first version loaded takes all traffic; later ones are held without traffic', async () => {
    expect(pool.pick('u')).toBeUndefined();
    await pool.loadVersion({ name: 'm', version: '1' });
    await pool.loadVersion({ name: 'm', version: '2' });
    expect(pool.pick('u')?.version.version).toBe('1');
    expect(pool.state().versions.map((v) => [v.model.version.version, v.weight])).toEqual([
      ['1', 100],
      ['2', 0],
    ]);
  });

  test('loading is idempotent, also when retried concurrently', async () => {
    const [a, b] = await Promise.all([
      pool.loadVersion({ name: 'm', version: '2' }),
      pool.loadVersion({ name: 'm', version: '2' }),
    ]);
    expect([a.alreadyLoaded, b.alreadyLoaded]).toEqual([false, true]);
    expect(b.model).toBe(a.model);
    expect(loader.loads).toBe(1);
  });

  test('a failed load leaves the pool as it was', async () => {
    await pool.loadVersion({ name: 'm', version: '1' });
    const before = pool.state();
    await expect(pool.loadVersion({ name: 'm', version: '9' })).rejects.toBeInstanceOf(ModelLoadError);
    expect(pool.state()).toEqual(before);
    expect(pool.lastError).toMatchObject({ model: 'models:/m/9', message: expect.stringContaining('checksum') });
  });

  test('versions of another registered model are refused', async () => {
    await pool.loadVersion({ name: 'm', version: '1' });
    await expect(pool.loadVersion({ name: 'other', version: '2' })).rejects.toBeInstanceOf(PoolConflictError);
  });

  test('policy errors name the field; the policy in force is unchanged', async () => {
    await pool.loadVersion({ name: 'm', version: '1' });
    await expect(pool.setPolicy({ '1': 50, '2': 50 })).rejects.toThrow(PolicyError);
    await expect(pool.setPolicy({ '1': 50, '2': 50 })).rejects.toThrow(/weights\["2"\] names a version that is not/);
    expect(pool.policy?.toJSON().weights).toEqual({ '1': 100 });
  });

  test('unloading a routed version is refused; an unrouted one is freed after its last request', async () => {
    loader.delayMs = 30;
    await pool.loadVersion({ name: 'm', version: '1' });
    await pool.loadVersion({ name: 'm', version: '2' });
    await expect(pool.unload('1')).rejects.toThrow('version 1 still takes 100% of traffic');

    await pool.setPolicy({ '2': 100 });
    const v1 = pool.state().versions[0]!.model;
    v1.acquire(); // a request that picked version 1 before the policy changed
    const pending = v1.ranker.rank(Int32Array.of(1), 1);
    expect(await pool.unload('1')).toBe(true);
    expect(ranker(v1).disposed).toBe(false);
    await pending;
    v1.release();
    await v1.retire();
    expect(ranker(v1).disposed).toBe(true);
    expect(await pool.unload('1')).toBe(false); // idempotent
    expect(pool.state().versions.map((v) => v.model.version.version)).toEqual(['2']);
  });

  test('load() is the single-model behaviour: all traffic to the version, the others released', async () => {
    await pool.loadVersion({ name: 'm', version: '1' });
    await pool.loadVersion({ name: 'm', version: '2' });
    await pool.setPolicy({ '1': 50, '2': 50 });
    const v1 = pool.state().versions[0]!.model;
    expect(await pool.load({ name: 'm', version: '2' })).toMatchObject({ swapped: true });
    expect(pool.state().versions.map((v) => [v.model.version.version, v.weight])).toEqual([['2', 100]]);
    await v1.retire();
    expect(ranker(v1).disposed).toBe(true);
    expect(await pool.load({ name: 'm', version: '2' })).toMatchObject({ swapped: false });
  });
});

describe('recsys.v1.Admin over gRPC', () => {
  let loader: FakeLoader;
  let pool: ModelPool;
  let running: RunningServer;
  let admin: AdminClient;
  let client: RecommenderClient;

  beforeAll(async () => {
    loader = new FakeLoader();
    pool = new ModelPool(loader);
    running = await startServer({ slot: pool, port: 0, admin: true });
    admin = adminClient(running.address);
    client = recommenderClient(running.address);
  });

  afterAll(async () => {
    admin.close();
    client.close();
    await running.shutdown(1000);
  });

  const load = (r: { model: string; version?: string; alias?: string }) => call(admin.LoadVersion.bind(admin), r);
  const setPolicy = (weights: Record<string, number>, salt = '') =>
    call(admin.SetTrafficPolicy.bind(admin), { policy: { weights, salt } });
  const unload = (model_version: string) => call(admin.UnloadVersion.bind(admin), { model_version });
  const state = () => call(admin.GetState.bind(admin), {});
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => ({ code: -1, details: 'succeeded' }),
      (e: ServiceError) => e,
    );

  test('loads by alias and version; a retried load is OK with already_loaded', async () => {
    expect(await load({ model: 'm', alias: 'champion' })).toMatchObject({
      version: { model_name: 'm', model_version: '1', aliases: ['champion'], weight: 100 },
      already_loaded: false,
    });
    expect(await load({ model: 'm', version: '2' })).toMatchObject({
      version: { model_version: '2', dataset_version: 'data-2', weight: 0 },
      already_loaded: false,
    });
    expect(await load({ model: 'm', version: '2' })).toMatchObject({ already_loaded: true });
    expect(loader.loads).toBe(2);
  });

  test('bad requests are INVALID_ARGUMENT naming the field', async () => {
    expect(await failure(load({ model: '', version: '1' }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: 'model is required (a registered model name)',
    });
    expect(await failure(load({ model: 'm', version: '1', alias: 'champion' }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    expect(await failure(load({ model: 'm', version: 'x' }))).toMatchObject({
      details: 'version must be a registry version number (value: "x")',
    });
    expect(await failure(setPolicy({ '1': 50, '5': 50 }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: 'weights["5"] names a version that is not loaded (loaded: 1, 2) (value: "5")',
    });
    expect(await failure(setPolicy({ '1': -1, '2': 101 }))).toMatchObject({
      details: 'weights["1"] must not be negative (value: -1)',
    });
    expect(await failure(setPolicy({ '1': 0 }))).toMatchObject({ details: expect.stringMatching(/^weights must sum/) });
  });

  test('a version that fails its checks is FAILED_PRECONDITION and nothing changes', async () => {
    const before = await state();
    expect(await failure(load({ model: 'm', version: '9' }))).toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringContaining('checksum') as string,
    });
    expect(await state()).toEqual(before);
  });

  test('50/50 splits users stickily; the response says which version served', async () => {
    expect(await setPolicy({ '1': 1, '2': 1 }, 'split')).toEqual({
      policy: { weights: { '1': 50, '2': 50 }, salt: 'split' },
    });
    const users = Array.from({ length: 400 }, (_, i) => `user-${i}`);
    const first = await Promise.all(users.map((u) => recommend(client, req(u))));
    const second = await Promise.all(users.map((u) => recommend(client, req(u))));
    expect(second.map((r) => r.model_version)).toEqual(first.map((r) => r.model_version));
    const onTwo = first.filter((r) => r.model_version === '2').length;
    expect(Math.abs(onTwo / users.length - 0.5)).toBeLessThan(0.1);
    for (const r of first) expect(r.dataset_version).toBe(`data-${r.model_version}`);
  });

  test('unloading a routed version is refused; unloading twice is OK', async () => {
    expect(await failure(unload('2'))).toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: 'version 2 still takes 50% of traffic; set a traffic policy without it first',
    });
    await load({ model: 'm', version: '3' });
    expect(await unload('3')).toEqual({ was_loaded: true });
    expect(await unload('3')).toEqual({ was_loaded: false });
  });

  test('GetState lists the versions and the policy', async () => {
    const s = await state();
    expect(s.versions.map((v) => [v.model_version, v.weight])).toEqual([
      ['1', 50],
      ['2', 50],
    ]);
    expect(s.policy).toEqual({ weights: { '1': 50, '2': 50 }, salt: 'split' });
  });

  test('switching the policy from v1:100 to v2:100 under 200 concurrent requests fails none', async () => {
    await setPolicy({ '1': 100 });
    const [v1, v2] = pool.state().versions.map((v) => v.model);
    for (const m of [v1, v2]) ranker(m).delayMs = 30;
    const users = Array.from({ length: 200 }, (_, i) => `load-${i}`);
    const served = users.map((u) => recommend(client, req(u)).then((r) => r.model_version));
    // Switch while version 1 is ranking some of them, then unload it: it must be freed only after the last of them
    // (the stand-in ranker fails any request that outlives its graph).
    while (ranker(v1).calls.length < 20) await new Promise((r) => setTimeout(r, 1));
    await setPolicy({ '2': 100 });
    expect(await unload('1')).toEqual({ was_loaded: true });
    const after = Promise.all(users.map((u) => recommend(client, req(u)).then((r) => r.model_version)));
    const results = await Promise.allSettled(served);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const versions = results.map((r) => (r as PromiseFulfilledResult<string>).value);
    for (const v of versions) expect(['1', '2']).toContain(v);
    expect(versions.filter((v) => v === '1').length).toBeGreaterThanOrEqual(20);
    expect(new Set(await after)).toEqual(new Set(['2']));
    await v1!.retire();
    expect(ranker(v1).disposed).toBe(true);
  });
});
