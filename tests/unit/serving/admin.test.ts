/**
 * Several versions in one process with stand-in models (no stack needed): the model pool and the recsys.v1.Admin
 * service over gRPC. Idempotent loads and unloads, refusals, the traffic split, and changing the policy while
 * requests are in flight; loads that hang run into their deadline without holding up a rollback; the admin token
 * (generated once, mode 0600, required by Admin and by nothing else) and the loopback-only bind. The registry-backed
 * path is in tests/integration/serving-admin.test.ts.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { status, type ServiceError } from '@grpc/grpc-js';
import { adminToken, adminTokenFile } from '../../../lib/admin-token';
import { adminClient, healthStatus, recommend, recommenderClient } from '../../../serving/client';
import { ModelLoadError } from '../../../serving/errors';
import { LoadedModel } from '../../../serving/loaded-model';
import type { ModelLoader } from '../../../serving/model-loader';
import type { ServableVersion } from '../../../serving/model-version';
import { ModelPool, PoolConflictError } from '../../../serving/model-pool';
import type { ModelRef } from '../../../serving/model-ref';
import { recsysV1, type AdminClient, type RecommendRequest, type RecommenderClient } from '../../../serving/proto';
import { startServer, type RunningServer } from '../../../serving/server';
import { PolicyError } from '../../../serving/traffic-policy';
import { FakeRanker, fakeCatalog, fakeServable } from './fakes';
import { call } from '../../grpc-calls';

// The admin token of every server and client here comes from a stack directory of this file's own.
const stackDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-admin-stack-'));
process.env.RECSYS_STACK_DIR = stackDir;
delete process.env.RECSYS_ADMIN_TOKEN;
afterAll(() => fs.rmSync(stackDir, { recursive: true, force: true }));

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

/** `p`, or a rejection saying it did not settle within `ms` (so a wait that never ends fails the test at once). */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('model loads have a deadline', () => {
  /** Version 7's resolve or load never answers (a registry or store that hangs), or answers only when told to. */
  class HangingLoader extends FakeLoader {
    signals: AbortSignal[] = [];
    constructor(
      private readonly hang: 'resolve' | 'load',
      private readonly gate: Promise<void> = new Promise<void>(() => undefined),
    ) {
      super();
    }
    override resolve(ref: ModelRef, signal?: AbortSignal): Promise<ServableVersion> {
      if (ref.version !== '7' || this.hang !== 'resolve') return super.resolve(ref);
      this.signals.push(signal!);
      return this.gate.then(() => servable(ref.name, '7'));
    }
    override load(v: ServableVersion, signal?: AbortSignal): Promise<LoadedModel> {
      if (v.version !== '7' || this.hang !== 'load') return super.load(v);
      this.signals.push(signal!);
      return this.gate.then(() => new LoadedModel(v, new FakeRanker(), fakeCatalog()));
    }
  }

  test.each(['resolve', 'load'] as const)(
    'a %s that never answers fails at the deadline, and a rollback lands meanwhile',
    async (hang) => {
      const loader = new HangingLoader(hang);
      const pool = new ModelPool(loader, { loadTimeoutMs: 400 });
      await pool.loadVersion({ name: 'm', version: '1' });
      await pool.loadVersion({ name: 'm', version: '2' });
      await pool.setPolicy({ '1': 50, '2': 50 });
      const started = Date.now();
      const hung = pool.loadVersion({ name: 'm', version: '7' });
      hung.catch(() => undefined);
      // The rollback: all traffic back to the champion, the canary unloaded, both while version 7 still hangs.
      const rollback = await within(200, pool.setPolicy({ '1': 100 }), 'SetTrafficPolicy behind a hung load');
      expect(rollback.toJSON().weights).toEqual({ '1': 100 });
      expect(await within(200, pool.unload('2'), 'UnloadVersion behind a hung load')).toBe(true);
      expect(pool.pick('anyone')?.version.version).toBe('1');

      const err = await within(
        2000,
        hung.then(
          () => undefined,
          (e: unknown) => e,
        ),
        'the hung load',
      );
      expect(err).toBeInstanceOf(ModelLoadError);
      expect((err as Error).message).toBe(
        'cannot load models:/m/7: deadline: not done within 400 ms; the versions loaded are unchanged',
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(390);
      expect(loader.signals.map((s) => s.aborted)).toEqual([true]); // told to stop
      expect(pool.lastError).toMatchObject({ model: 'models:/m/7', message: expect.stringContaining('deadline') });
      // The queue moved on: the next load runs.
      expect(await within(1000, pool.loadVersion({ name: 'm', version: '3' }), 'the next load')).toMatchObject({
        alreadyLoaded: false,
      });
      expect(pool.state().versions.map((v) => v.model.version.version)).toEqual(['1', '3']);
      await within(2000, pool.close(), 'close');
    },
  );

  test('a model delivered after its deadline is released, not put into the pool', async () => {
    let open!: () => void;
    const loader = new HangingLoader('load', new Promise<void>((r) => (open = r)));
    const created: LoadedModel[] = [];
    const load = loader.load.bind(loader);
    loader.load = (v, signal) => load(v, signal).then((m) => (created.push(m), m));
    const pool = new ModelPool(loader, { loadTimeoutMs: 100 });
    await pool.loadVersion({ name: 'm', version: '1' });
    await expect(pool.loadVersion({ name: 'm', version: '7' })).rejects.toThrow(/deadline/);
    open();
    while (created.length === 0) await new Promise((r) => setTimeout(r, 5));
    await created[0]!.retire(); // resolves once the pool's own retire() has disposed it
    expect(ranker(created[0])).toMatchObject({ disposed: true });
    expect(pool.state().versions.map((v) => v.model.version.version)).toEqual(['1']);
    await pool.close();
  });

  test('over gRPC: SetTrafficPolicy answers at once while a LoadVersion hangs; the load fails at its deadline', async () => {
    const pool = new ModelPool(new HangingLoader('load'), { loadTimeoutMs: 600 });
    const running = await startServer({ slot: pool, port: 0, admin: true });
    const admin = adminClient(running.address);
    try {
      await call(admin.LoadVersion.bind(admin), { model: 'm', version: '1' });
      await call(admin.LoadVersion.bind(admin), { model: 'm', version: '2' });
      await call(admin.SetTrafficPolicy.bind(admin), { policy: { weights: { '1': 50, '2': 50 }, salt: '' } });
      const hung = call(admin.LoadVersion.bind(admin), { model: 'm', version: '7' }).then(
        () => ({ code: -1, details: 'succeeded' }),
        (e: ServiceError) => e,
      );
      await new Promise((r) => setTimeout(r, 50)); // the load is under way
      const started = Date.now();
      const rollback = await call(admin.SetTrafficPolicy.bind(admin), { policy: { weights: { '1': 100 }, salt: '' } });
      expect(Date.now() - started).toBeLessThan(300);
      expect(rollback.policy?.weights).toEqual({ '1': 100 });
      expect(await hung).toMatchObject({
        code: status.FAILED_PRECONDITION,
        details: 'cannot load models:/m/7: deadline: not done within 600 ms; the versions loaded are unchanged',
      });
    } finally {
      admin.close();
      await running.shutdown(1000);
    }
  });
});

describe('the admin token', () => {
  const tokenEnv = (dir: string, token?: string): NodeJS.ProcessEnv => ({
    RECSYS_STACK_DIR: dir,
    ...(token === undefined ? {} : { RECSYS_ADMIN_TOKEN: token }),
  });
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(stackDir, 'tok-'))));

  test('is generated once into the stack directory with mode 0600, then read back', () => {
    const first = adminToken(tokenEnv(dir));
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    const file = adminTokenFile(tokenEnv(dir));
    expect(file).toBe(path.join(dir, 'admin-token'));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(adminToken(tokenEnv(dir))).toBe(first);
    expect(fs.readdirSync(dir)).toEqual(['admin-token']); // no temporary file left behind
  });

  test('RECSYS_ADMIN_TOKEN wins; unusable tokens are refused naming where they came from', () => {
    expect(adminToken(tokenEnv(dir, 'x'.repeat(20)))).toBe('x'.repeat(20));
    expect(fs.existsSync(adminTokenFile(tokenEnv(dir)))).toBe(false);
    expect(() => adminToken(tokenEnv(dir, 'short'))).toThrow(
      'RECSYS_ADMIN_TOKEN is too short (5 characters; at least 16, e.g. `openssl rand -hex 32`)',
    );
    expect(() => adminToken(tokenEnv(dir, 'has a space in it!'))).toThrow(/printable ASCII without spaces/);
    const file = adminTokenFile(tokenEnv(dir));
    fs.writeFileSync(file, 'y'.repeat(32), { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    expect(() => adminToken(tokenEnv(dir))).toThrow(
      `admin token ${file} is readable by other users (mode 644); run: chmod 600 ${file}`,
    );
    fs.chmodSync(file, 0o600);
    expect(adminToken(tokenEnv(dir))).toBe('y'.repeat(32));
  });

  test('processes that need it first at the same moment all end up with the same token', async () => {
    const script = `process.stdout.write(require(${JSON.stringify(path.resolve(__dirname, '../../../lib/admin-token.ts'))}).adminToken())`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
          env: { ...process.env, RECSYS_STACK_DIR: dir, RECSYS_ADMIN_TOKEN: '' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
      });
    const tokens = await Promise.all(Array.from({ length: 6 }, run));
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).toBe(fs.readFileSync(adminTokenFile(tokenEnv(dir)), 'utf8').trim());
    expect(fs.readdirSync(dir)).toEqual(['admin-token']);
  }, 30_000);

  describe('over gRPC', () => {
    const TOKEN = 'the-admin-token-of-this-test';
    let pool: ModelPool;
    let running: RunningServer;
    beforeAll(async () => {
      pool = new ModelPool(new FakeLoader());
      await pool.loadVersion({ name: 'm', version: '1' });
      running = await startServer({ slot: pool, port: 0, admin: true, adminToken: TOKEN });
    });
    afterAll(() => running.shutdown(1000));

    const getState = async (client: AdminClient) => {
      try {
        return await call(client.GetState.bind(client), {}).then(
          (s) => s,
          (e: ServiceError) => e,
        );
      } finally {
        client.close();
      }
    };

    test('Admin calls without the token, or with another, are UNAUTHENTICATED; with it they work', async () => {
      const bare = new (recsysV1().Admin)(running.address, grpc.credentials.createInsecure());
      expect(await getState(bare)).toMatchObject({
        code: status.UNAUTHENTICATED,
        details:
          'recsys.v1.Admin needs the admin token: send metadata "authorization: Bearer <token>" ' +
          '(the token is $RECSYS_ADMIN_TOKEN, else the file $RECSYS_STACK_DIR/admin-token)',
      });
      expect(await getState(adminClient(running.address, {}, 'another-token-entirely'))).toMatchObject({
        code: status.UNAUTHENTICATED,
        details:
          "the admin token sent does not match this server's ($RECSYS_ADMIN_TOKEN or $RECSYS_STACK_DIR/admin-token)",
      });
      const setPolicy = (client: AdminClient) =>
        call(client.SetTrafficPolicy.bind(client), { policy: { weights: { '1': 100 }, salt: 'x' } }).then(
          () => 'OK',
          (e: ServiceError) => e.code,
        );
      const other = adminClient(running.address, {}, 'another-token-entirely');
      expect(await setPolicy(other)).toBe(status.UNAUTHENTICATED);
      other.close();
      expect(pool.policy?.salt).not.toBe('x'); // refused before it did anything
      expect(await getState(adminClient(running.address, {}, TOKEN))).toMatchObject({
        versions: [{ model_version: '1', weight: 100 }],
      });
    });

    test('the Recommender and health services stay open', async () => {
      const client = recommenderClient(running.address);
      try {
        expect((await recommend(client, req('anyone'))).model_version).toBe('1');
      } finally {
        client.close();
      }
      expect(await healthStatus(running.address)).toBe('SERVING');
    });
  });
});

describe('loopback only', () => {
  test('a server on a non-loopback host is refused; loopback addresses are accepted', async () => {
    const pool = new ModelPool(new FakeLoader());
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.com'])
      await expect(startServer({ slot: pool, port: 0, host })).rejects.toThrow(
        `refusing to serve on ${JSON.stringify(host)}: not a loopback address (127.0.0.0/8, ::1, localhost)`,
      );
    const running = await startServer({ slot: pool, port: 0, host: '127.0.0.2', admin: true });
    expect(running.address).toMatch(/^127\.0\.0\.2:\d+$/);
    await running.shutdown(1000);
  });
});
