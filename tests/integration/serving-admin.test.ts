/**
 * Several registered versions in one server against the real stack: a small model is trained and registered by
 * continuousTraining, its artefact is registered again as a second version, and both are loaded through
 * recsys.v1.Admin from the registry (checksum, signature, warm-up). A 50/50 policy splits users stickily, a retried
 * LoadVersion does nothing, and a version that still takes traffic cannot be unloaded. A `recsys serve` process is
 * steered by the fleet's Admin calls with the admin token both read from the stack directory, refuses callers without
 * it, and `recsys simulate --fault` stopped with SIGTERM clears its fault.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { loadVersion, serverState, setServerFault, setTrafficPolicy, unloadVersion } from '../../fleet/admin';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { adminClient, recommend, recommenderClient } from '../../serving/client';
import { call, failure } from '../grpc-calls';
import { registryLoader } from '../../serving/model-loader';
import { ModelPool } from '../../serving/model-pool';
import { recsysV1, type AdminClient, type RecommendRequest, type RecommenderClient } from '../../serving/proto';
import { startServer, type RunningServer } from '../../serving/server';
import type { ContinuousTrainingResult } from '../../workflows/training-api';
import { spawnServe } from './serve-process';
import { useTemporal } from './stack';
import { trainTinyModel } from './training-fixture';

const temporal = useTemporal();
const mlflow = new MlflowClient();

let model: string;
let trained: ContinuousTrainingResult;
let v1: string;
let v2: string;
let pool: ModelPool;
let running: RunningServer;
let admin: AdminClient;
let client: RecommenderClient;

beforeAll(async () => {
  ({ model, trained } = await trainTinyModel(temporal, 'it-admin', { epochs: 1 }));
  v1 = trained.registered.version;
  // The same artefact and serving tags as a second version: a real registry version that passes every check.
  const registered = await mlflow.getModelVersion(model, v1);
  const run = await mlflow.getRun(trained.registered.mlflowRunId);
  v2 = (await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, tagsOf(registered)))
    .version;

  // Starts empty: the first LoadVersion takes all traffic.
  pool = new ModelPool(registryLoader());
  running = await startServer({ slot: pool, port: 0, admin: true });
  admin = adminClient(running.address);
  client = recommenderClient(running.address);
});

afterAll(async () => {
  admin?.close();
  client?.close();
  await running?.shutdown(5000);
});

const load = (r: { model: string; version?: string; alias?: string }) => call(admin.LoadVersion.bind(admin), r);

test('loads two registered versions; a retried LoadVersion is OK and loads nothing', async () => {
  expect(await load({ model, alias: 'challenger' })).toMatchObject({
    version: { model_name: model, model_version: v1, dataset_version: trained.dataset.version, weight: 100 },
    already_loaded: false,
  });
  const first = await load({ model, version: v2 });
  expect(first).toMatchObject({ version: { model_version: v2, weight: 0 }, already_loaded: false });
  const held = pool.state().versions.map((v) => v.model);
  const retried = await load({ model, version: v2 });
  expect(retried).toEqual({ ...first, already_loaded: true });
  expect(pool.state().versions.map((v) => v.model)).toEqual(held); // the same objects: nothing was reloaded
});

test('a 50/50 policy splits ~400 users within tolerance and keeps each on one version', async () => {
  const applied = await call(admin.SetTrafficPolicy.bind(admin), {
    policy: { weights: { [v1]: 50, [v2]: 50 }, salt: '' },
  });
  expect(applied).toEqual({ policy: { weights: { [v1]: 50, [v2]: 50 }, salt: 'recsys' } });

  const catalog = pool.active!.catalog;
  const history = [1, 2, 3].map((i, n) => ({ item_id: catalog.idOf(i)!, timestamp_ms: 1000 * (n + 1) }));
  const req = (user_id: string): RecommendRequest => ({ user_id, history, k: 5, exclude_item_ids: [] });
  const users = Array.from({ length: 400 }, (_, i) => `it-user-${i}`);
  const first = await Promise.all(users.map((u) => recommend(client, req(u))));
  const again = await Promise.all(users.map((u) => recommend(client, req(u))));
  expect(again.map((r) => r.model_version)).toEqual(first.map((r) => r.model_version));
  const onV2 = first.filter((r) => r.model_version === v2).length;
  expect(first.filter((r) => r.model_version !== v1 && r.model_version !== v2)).toEqual([]);
  // Binomial sd at 400 users is 2.5 points; 10 points is four of them.
  expect(Math.abs(onV2 / users.length - 0.5)).toBeLessThan(0.1);
  for (const r of first) expect(r).toMatchObject({ model_name: model, fallback: false });
  // Same graph, same history: both versions rank alike, so the split changes which version is named, not the items.
  expect(first.find((r) => r.model_version === v2)?.items).toEqual(first.find((r) => r.model_version === v1)?.items);
});

test('a version that still takes traffic cannot be unloaded; after the policy moves off it, it can', async () => {
  const unload = (model_version: string) => call(admin.UnloadVersion.bind(admin), { model_version });
  expect(await failure(unload(v1))).toMatchObject({
    code: status.FAILED_PRECONDITION,
    details: `version ${v1} still takes 50% of traffic; set a traffic policy without it first`,
  });
  await call(admin.SetTrafficPolicy.bind(admin), { policy: { weights: { [v2]: 100 }, salt: '' } });
  expect(await unload(v1)).toEqual({ was_loaded: true });
  expect(await unload(v1)).toEqual({ was_loaded: false });
  const state = await call(admin.GetState.bind(admin), {});
  expect(state).toMatchObject({
    versions: [{ model_version: v2, weight: 100 }],
    policy: { weights: { [v2]: 100 }, salt: 'recsys' },
  });
  const res = await recommend(client, { user_id: 'anyone', history: [], k: 3, exclude_item_ids: [] });
  expect(res.model_version).toBe(v2);
});

/** A replica as fleet/replicas.ts starts one: the same environment (so the same stack directory and token). */
const replicaArgs = () => ['--model', model, '--version', v1, '--port', '0', '--metrics-port', '0', '--allow-faults'];

test('a `recsys serve` process: fleet Admin calls carry the token, callers without it are refused', async () => {
  const replica = spawnServe(replicaArgs());
  try {
    const [, address] = await replica.waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/);
    // The fleet's calls, as the deployment activities make them.
    expect((await serverState(address!)).versions.map((v) => v.model_version)).toEqual([v1]);
    expect(await loadVersion(address!, model, v2, 120_000)).toMatchObject({ already_loaded: false });
    expect((await setTrafficPolicy(address!, { [v1]: 50, [v2]: 50 })).policy?.weights).toEqual({ [v1]: 50, [v2]: 50 });
    expect((await setServerFault(address!, v2, { added_latency_ms: 5 }, 10_000, 30)).faults).toHaveProperty(v2);
    const state = await serverState(address!);
    expect(state.fault_expires_at_ms[v2]).toBeGreaterThan(Date.now() + 25_000);
    await setServerFault(address!, v2, {});
    await setTrafficPolicy(address!, { [v1]: 100 });
    expect(await unloadVersion(address!, v2)).toEqual({ was_loaded: true });
    // Any other local process without the token.
    const bare = new (recsysV1().Admin)(address!, grpc.credentials.createInsecure());
    const refused = await failure(
      call(bare.SetTrafficPolicy.bind(bare), { policy: { weights: { [v1]: 100 }, salt: '' } }),
    );
    bare.close();
    expect(refused).toMatchObject({ code: status.UNAUTHENTICATED, details: expect.stringContaining('admin token') });
    const stranger = adminClient(address!, {}, 'not-the-token-of-this-machine');
    expect(await failure(call(stranger.GetState.bind(stranger), {}))).toMatchObject({ code: status.UNAUTHENTICATED });
    stranger.close();
    // The Recommender needs nothing.
    const open = recommenderClient(address!);
    expect((await recommend(open, { user_id: 'anyone', history: [], k: 3, exclude_item_ids: [] })).model_version).toBe(
      v1,
    );
    open.close();
    expect(replica.output()).toMatch(/recsys\.v1\.Admin needs the admin token from \S+admin-token\n/);
  } finally {
    replica.child.kill('SIGTERM');
    await replica.exited;
  }
});

test('`recsys simulate --fault` stopped by SIGTERM mid-run clears its fault before it exits', async () => {
  const replica = spawnServe(replicaArgs());
  try {
    const [, address] = await replica.waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/);
    const sim = spawn(
      process.execPath,
      ['--import', 'tsx', 'cli/main.ts', 'simulate', '--address', address!, '--model', model].concat(
        ['--qps', '5', '--seconds', '120'],
        ['--fault', 'errors=1', '--version', v1],
      ),
      { cwd: path.resolve(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let simOutput = '';
    sim.stdout.on('data', (b: Buffer) => (simOutput += b.toString()));
    sim.stderr.on('data', (b: Buffer) => (simOutput += b.toString()));
    const simExited = new Promise<number | null>((resolve) => sim.on('exit', resolve));
    try {
      const deadline = Date.now() + 120_000;
      while (!(v1 in (await serverState(address!)).faults)) {
        if (Date.now() > deadline || sim.exitCode !== null) throw new Error(`simulate set no fault:\n${simOutput}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      sim.kill('SIGTERM');
    }
    expect(await simExited).toBe(143);
    expect(simOutput).toContain(`SIGTERM: clearing the fault on version ${v1}`);
    expect((await serverState(address!)).faults).toEqual({});
    // Had it been SIGKILLed instead, the fault would end by itself 60 s after the run's planned end.
    expect(simOutput).toMatch(/Fault on version \d+: errors=1 \(expires in 180 s\)/);
  } finally {
    replica.child.kill('SIGTERM');
    await replica.exited;
  }
});

test('`recsys serve` refuses a non-loopback host before loading anything', async () => {
  const replica = spawnServe(['--model', model, '--version', v1, '--host', '0.0.0.0', '--port', '0']);
  expect(await replica.exited).toBe(1);
  expect(replica.output()).toContain(
    'recsys: --host must be a loopback address (127.0.0.0/8, ::1, localhost), got "0.0.0.0": ' +
      'recsys serve is reachable from this machine only',
  );
});
