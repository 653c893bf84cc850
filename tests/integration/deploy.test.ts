/**
 * The serving environments against the real stack: a tiny model trained and registered by continuousTraining (and
 * its artefact registered again as a second version), served by real `recsys serve` replica processes that the
 * deployment activities start, steer through recsys.v1.Admin and stop. Ports come from a private range
 * (RECSYS_ENV_PORT_BASE), so `make demo`'s server on 50051 is never touched.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { createActivities } from '../../activities';
import type { EnsureEnvironmentInput } from '../../activities/contracts';
import * as fleet from '../../fleet/environment';
import { windowStats } from '../../fleet/version-metrics';
import { replica, replicaSlots } from '../../fleet/environments';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { alive, hasPidFile, readPid } from '../../fleet/replicas';
import { simulate, type SimulationResult } from '../../fleet/simulate/run';
import { datasetFromUri } from '../../fleet/simulate/target';
import { loadWorkload } from '../../fleet/simulate/workload';
import { localDataset } from '../../lib/dataset/cache';
import type { ContinuousTrainingResult } from '../../workflows/training-api';
import { useTemporal } from './stack';
import { trainTinyModel } from './training-fixture';
import { usePrivateServingPorts } from './serving-ports';

const {
  ensureEnvironment,
  environmentState,
  runLoadTest,
  scrapeVersionMetrics,
  setFault,
  setTrafficWeights,
  stopEnvironment,
} = createActivities();

usePrivateServingPorts('deploy');

const temporal = useTemporal();
const mlflow = new MlflowClient();
const ROOT = path.resolve(__dirname, '..', '..');

let model: string;
let trained: ContinuousTrainingResult;
let v1: string;
let v2: string;
let input: EnsureEnvironmentInput;

beforeAll(async () => {
  ({ model, trained } = await trainTinyModel(temporal, 'it-deploy', { epochs: 1 }));
  v1 = trained.registered.version;
  const registered = await mlflow.getModelVersion(model, v1);
  const run = await mlflow.getRun(trained.registered.mlflowRunId);
  v2 = (await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, tagsOf(registered)))
    .version;
  input = { env: 'staging', replicas: 2, model, versions: [v1, v2], weights: { [v1]: 50, [v2]: 50 } };
});

afterAll(async () => {
  await stopEnvironment({ env: 'staging' });
  for (const r of replicaSlots('staging')) expect(hasPidFile(r)).toBe(false);
});

/** The activity's failure, or a marker when it succeeded. */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => ({ type: 'succeeded', message: '' }),
    (e: unknown) => e as ApplicationFailure,
  );

test('ensureEnvironment starts 2 replicas holding both versions; a second call is the same state and starts nothing', async () => {
  const first = await ensureEnvironment(input);
  expect(first.replicas.map((r) => r.address)).toEqual([replica('staging', 0).address, replica('staging', 1).address]);
  for (const r of first.replicas) {
    expect(r).toMatchObject({ up: true, model, weights: { [v1]: 50, [v2]: 50 }, salt: 'recsys', faults: {} });
    expect(r.versions.map((v) => v.version)).toEqual([v1, v2]);
    expect(r.versions[0]!.datasetVersion).toBe(trained.dataset.version);
    expect(alive(r.pid)).toBe(true);
  }
  const second = await ensureEnvironment(input);
  expect(second).toEqual(first); // same pids: no second process
  expect(replicaSlots('staging').filter(hasPidFile)).toHaveLength(2);
  expect(await environmentState({ env: 'staging' })).toEqual(first);
});

test('an environment that serves another model is not taken over: EnvironmentBusy, its replicas untouched', async () => {
  const before = await environmentState({ env: 'staging' });
  const other = { ...input, model: `${model}-other` };
  const refused = await failure(ensureEnvironment(other));
  expect(refused).toMatchObject({ type: 'EnvironmentBusy', nonRetryable: true });
  expect(refused.message).toMatch(
    `staging#0 (${replica('staging', 0).address}) serves ${model}, not ${model}-other: this staging belongs to ` +
      "another model's rollouts",
  );
  expect(await environmentState({ env: 'staging' })).toEqual(before); // same pids, same versions
});

test('a cancelled ensureEnvironment stops before its next replica call', async () => {
  const abort = new AbortController();
  abort.abort();
  await expect(
    fleet.ensureEnvironment({ ...input, weights: { [v1]: 90, [v2]: 10 } }, { signal: abort.signal }),
  ).rejects.toMatchObject({ type: 'Cancelled' });
  expect((await environmentState({ env: 'staging' })).replicas.map((r) => r.weights)).toEqual([
    { [v1]: 50, [v2]: 50 },
    { [v1]: 50, [v2]: 50 },
  ]);
});

/** Synthetic users with one real history: many distinct user ids, so the 50/50 split puts users on both versions. */
async function manyUsers(n: number) {
  const [one] = await loadWorkload(await localDataset(trained.dataset.manifestUri), { maxUsers: 1 });
  return Array.from({ length: n }, (_, i) => ({ ...one!, userId: `it-deploy-user-${i}` }));
}

test('a fault on one version (latency and errors) shows in that version only', async () => {
  const users = await manyUsers(300);
  const faults = await setFault({ env: 'staging', version: v2, fault: { addedLatencyMs: 150, errorRate: 0.3 } });
  expect(faults.faults).toEqual({ [v2]: { added_latency_ms: 150, error_rate: 0.3, random_recommendations: false } });
  try {
    const before = await scrapeVersionMetrics({ env: 'staging', versions: [v1, v2] });
    const sim = await simulate({
      addresses: [replica('staging', 0).address, replica('staging', 1).address],
      users,
      qps: 60,
      seconds: 4,
    });
    const after = await scrapeVersionMetrics({ env: 'staging', versions: [v1, v2] });
    const w = windowStats(before, after);
    expect(w[v1]!.requests).toBeGreaterThan(40);
    expect(w[v2]!.requests).toBeGreaterThan(40);
    expect(w[v1]!.errors).toBe(0);
    // 30% errors: with ~120 calls the share is within 0.12..0.5 far beyond 3 standard deviations.
    expect(w[v2]!.errorRate).toBeGreaterThan(0.12);
    expect(w[v2]!.errorRate).toBeLessThan(0.5);
    expect(w[v2]!.p50Ms!).toBeGreaterThan(100);
    expect(w[v1]!.p99Ms!).toBeLessThan(100);
    // The client saw exactly the errors the servers counted.
    expect(sim.errors).toBe(w[v2]!.errors);
    expect(sim.errorsByCode).toEqual({ INTERNAL: sim.errors });
  } finally {
    await setFault({ env: 'staging', version: v2, fault: {} });
  }
  expect((await environmentState({ env: 'staging' })).replicas.map((r) => r.faults)).toEqual([{}, {}]);
});

test('recsys simulate replays the held-out interactions: clicks, and per-version counts equal to the scraped metrics', async () => {
  const before = await scrapeVersionMetrics({ env: 'staging', versions: [v1, v2] });
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'cli/main.ts',
        'simulate',
        '--env',
        'staging',
        '--model',
        model,
        '--qps',
        '40',
        '--seconds',
        '3',
        '--json',
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`exit ${code}: ${stderr}`))));
  });
  const sim = JSON.parse(out) as SimulationResult & { dataset: { version: string } };
  const after = await scrapeVersionMetrics({ env: 'staging', versions: [v1, v2] });
  const w = windowStats(before, after);
  expect(sim.dataset.version).toBe(trained.dataset.version);
  expect(sim.errors).toBe(0);
  expect(sim.requests).toBeGreaterThan(100);
  expect(sim.clicks).toBeGreaterThan(0);
  for (const v of [v1, v2]) {
    const client = sim.perVersion[v] ?? { requests: 0, clicks: 0 };
    expect({ v, requests: w[v]!.eligible, clicks: w[v]!.clicks }).toEqual({
      v,
      requests: client.requests,
      clicks: client.clicks,
    });
  }
  expect(w[v1]!.clicks + w[v2]!.clicks).toBe(sim.clicks);
});

test('runLoadTest is bounded in time and reports latency and throughput', async () => {
  const started = Date.now();
  const r = await runLoadTest({ env: 'staging', model, dataset: trained.dataset, qps: 50, seconds: 2 });
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(r.requests).toBeGreaterThanOrEqual(90);
  expect(r.errorRate).toBe(0);
  expect(r.achievedQps).toBeGreaterThan(40);
  expect(r.p99Ms!).toBeGreaterThanOrEqual(r.p50Ms!);
  expect(
    await failure(runLoadTest({ env: 'staging', model: 'other-model', dataset: trained.dataset, qps: 5, seconds: 1 })),
  ).toMatchObject({
    type: 'ConfigError',
  });
});

test('a killed replica: scrape and setTrafficWeights fail with ReplicaUnavailable naming it; ensureEnvironment restarts it', async () => {
  const victim = replica('staging', 1);
  const pid = readPid(victim)!;
  process.kill(-pid, 'SIGKILL');
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  expect(alive(pid)).toBe(false);

  const scraped = await failure(scrapeVersionMetrics({ env: 'staging', versions: [v1, v2] }));
  expect(scraped).toBeInstanceOf(ApplicationFailure);
  expect(scraped).toMatchObject({ type: 'ReplicaUnavailable', nonRetryable: true });
  expect(scraped.message).toContain(`replica staging#1 (${victim.address}`);
  expect(await failure(setTrafficWeights({ env: 'staging', weights: { [v1]: 100 } }))).toMatchObject({
    type: 'ReplicaUnavailable',
  });
  expect((await environmentState({ env: 'staging' })).replicas.map((r) => r.up)).toEqual([true, false]);

  const healed = await ensureEnvironment(input);
  expect(healed.replicas.map((r) => r.up)).toEqual([true, true]);
  expect(healed.replicas[1]!.pid).not.toBe(pid);
  expect(healed.replicas[1]!.weights).toEqual({ [v1]: 50, [v2]: 50 });
  const applied = await setTrafficWeights({ env: 'staging', weights: { [v1]: 9, [v2]: 1 } });
  expect(applied.weights).toEqual({ [v1]: 90, [v2]: 10 });
  expect(applied.replicas).toHaveLength(2);
});

test('bad input is refused naming what is wrong', async () => {
  expect(await failure(ensureEnvironment({ ...input, env: 'prod' }))).toMatchObject({
    type: 'ConfigError',
    message: 'environment must be one of staging, production, got "prod"',
  });
  expect(await failure(ensureEnvironment({ ...input, weights: { '999': 1 } }))).toMatchObject({
    type: 'ConfigError',
    message: `weights: version 999 is not in versions [${v1}, ${v2}]`,
  });
  expect(await failure(setTrafficWeights({ env: 'production', weights: { [v1]: 1 } }))).toMatchObject({
    type: 'NoEnvironment',
  });
  // datasetFromUri names the expected shape
  expect(() => datasetFromUri('s3://recsys/x')).toThrow(
    '--dataset-uri must look like s3://<bucket>/datasets/<name>/<version>/',
  );
});
