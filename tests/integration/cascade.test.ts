/**
 * A cascade version end to end on the real stack: continuousTraining trains the three stages as one model
 * (`model: cascade`: recall → DIN rank → RankNet re-rank), exports each stage graph and the checksummed manifest,
 * quantizes stage by stage (int8 only where a stage is faster beyond noise and the cascade keeps its NDCG) and
 * registers the served manifest as kind `cascade`; a rollout then canaries it against a single-model (two-tower)
 * champion with real replicas, traffic and feedback, and promotes it on approval; the promoted cascade answers
 * `recsys recommend` with its route and each stage's lineage, and its replicas export per-stage latency and routes.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { replicaSlots } from '../../fleet/environments';
import { simulate } from '../../fleet/simulate/run';
import { expandPopulation, loadWorkload, type SimUser } from '../../fleet/simulate/workload';
import { parseCascadeManifest, type CascadeManifest } from '../../lib/cascade-manifest';
import { localDataset } from '../../lib/dataset/cache';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { objectStore } from '../../lib/object-store';
import { createTrainingWorker, type RecsysWorker } from '../../worker/create-worker';
import { continuousTraining } from '../../workflows/continuous-training';
import { approveUpdate } from '../../workflows/rollout-api';
import type { ContinuousTrainingResult } from '../../workflows/training-api';
import { spawnServe } from './serve-process';
import { rolloutToApproval } from './canary-fixture';
import { uniqueName, useTemporal } from './stack';
import { LEARNABLE_SHAPE, LEARNING_CONFIG, smallDatasetSource, trainingInput } from './training-fixture';
import { usePrivateServingPorts } from './serving-ports';

const ROOT = path.resolve(__dirname, '../..');
const { environmentState, stopEnvironment, promote } = createActivities();

usePrivateServingPorts('cascade');
// The replicas (children of this process) route with this budget: plenty for the test's traffic to take both paths.
process.env.RECSYS_ROUTER = JSON.stringify({ budget: { ratePerSecond: 40, burst: 40 } });

// Declared before useTemporal's hooks so that it runs first: the worker must stop before its connection closes.
afterAll(async () => {
  worker?.shutdown();
  await running;
  await act(stopEnvironment, { env: 'production' });
  await act(stopEnvironment, { env: 'staging' });
});

const temporal = useTemporal();
const mlflow = new MlflowClient();
const act = <A, R>(fn: (a: A) => Promise<R>, arg: A): Promise<R> =>
  new MockActivityEnvironment().run<[A], R, typeof fn>(fn, arg);

/** Stages sized for the small world: 60 candidates from recall, 20 for the re-ranker, the final top 20. */
const CASCADE = { model: 'cascade', recall_model: 'two_tower', recall_n: 60, rerank_m: 20, ...LEARNING_CONFIG };

let model: string;
let taskQueue: string;
let worker: RecsysWorker;
let running: Promise<void>;
let champion: ContinuousTrainingResult;
let cascade: ContinuousTrainingResult;
let users: SimUser[];
/** The cascade manifest the version serves (the export's, or quantization's choice of graphs). */
let servedManifest: CascadeManifest;

beforeAll(async () => {
  model = uniqueName('it-cascade');
  const dataset = uniqueName('it-ds');
  const source = await smallDatasetSource(dataset, LEARNABLE_SHAPE);
  taskQueue = uniqueName('it-cascade');
  worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  running = worker.run();
  const train = (config: Record<string, unknown>, family: string) =>
    temporal.client.workflow.execute(continuousTraining, {
      taskQueue,
      workflowId: `train-${model}-${family}`,
      args: [trainingInput(model, dataset, source, config)],
    });
  champion = await train(LEARNING_CONFIG, 'two-tower');
  await act(promote, { model, version: champion.registered.version, reason: 'test setup', by: 'jest' });
  cascade = await train(CASCADE, 'cascade');
  const q = cascade.quantization;
  const servedUri = q?.ships === 'int8' ? q.int8Uri : cascade.exported.onnxUri;
  servedManifest = parseCascadeManifest(String(await objectStore().getBytes(servedUri)), servedUri);
  users = await loadWorkload(await localDataset(cascade.dataset.manifestUri));
}, 900_000);

test('continuousTraining trains, exports and registers a cascade: one version, each stage a checksummed graph', async () => {
  expect(cascade.training.config).toMatchObject({ model: 'cascade' });
  expect(cascade.exported.kind).toBe('cascade');
  expect(cascade.exported.stages?.map((s) => [s.name, s.topK])).toEqual([
    ['recall', 60],
    ['rank', 20],
    ['rerank', 20],
  ]);
  // Quantized stage by stage, each decided on its own speed and the whole cascade's NDCG.
  const q = cascade.quantization!;
  expect(q.kind).toBe('cascade');
  expect(q.stages?.map((s) => s.name)).toEqual(['recall', 'rank', 'rerank']);
  // A stage ships int8 only when it is faster beyond noise: p50 ratio and its interval's upper end both <= 0.90.
  for (const s of q.stages!)
    if (s.ships === 'int8') expect(Math.max(s.p50Ratio, s.p50RatioHi)).toBeLessThanOrEqual(0.9);
  expect(q.ships).toBe(q.stages!.some((s) => s.ships === 'int8') ? 'int8' : 'float');
  // Evaluated end to end like any family (full ranking of the cascade's final order).
  expect(cascade.evaluation.model['ndcg@10']).toBeGreaterThan(0);

  // The version serves the export's manifest when every stage stays fp32, else the manifest of the chosen graphs.
  const served =
    q.ships === 'int8'
      ? { uri: q.int8Uri, sha256: q.int8Sha256 }
      : { uri: cascade.exported.onnxUri, sha256: cascade.exported.sha256 };
  const tags = tagsOf(await mlflow.getModelVersion(model, cascade.registered.version));
  expect(tags).toMatchObject({
    'recsys.onnx.kind': 'cascade',
    'recsys.onnx.uri': served.uri,
    'recsys.onnx.sha256': served.sha256,
    'recsys.onnx.precision': q.ships === 'int8' ? 'int8' : 'fp32',
    'recsys.model.family': 'cascade',
  });
  // The manifest names each stage's graph by URI and checksum (the chosen precision's); the graphs are in the store.
  const manifest = servedManifest;
  expect(manifest.stages.map((s) => s.name)).toEqual(['recall', 'rank', 'rerank']);
  for (const [i, s] of manifest.stages.entries()) {
    const stage = q.stages![i]!;
    expect(s.sha256).toBe(stage.ships === 'int8' ? stage.int8Sha256 : cascade.exported.stages![i]!.sha256);
    expect(await objectStore().exists(s.uri)).toBe(true);
  }
});

test('a canary of the cascade against the single-model champion runs end to end; approval promotes it', async () => {
  const version = cascade.registered.version;
  const { handle, waiting } = await rolloutToApproval(temporal.client, taskQueue, { model, version }, users);
  expect(waiting.analyses.map((a) => a.result.outcome)).toEqual(['pass']);
  expect(waiting.analyses[0]!.result.canary.requests).toBeGreaterThanOrEqual(40);
  await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', reason: 'cascade canary looks good' }] });
  expect(await handle.result()).toMatchObject({ outcome: 'promoted', baseline: champion.registered.version });

  const state = await act(environmentState, { env: 'production' });
  for (const r of state.replicas) expect(r.weights).toEqual({ [version]: 100 });
  expect((await mlflow.getVersionByAlias(model, 'champion'))?.version).toBe(version);

  // The cascade's replicas export each stage's latency and the routes taken under the canary's traffic.
  const metrics = await (await fetch(replicaSlots('production')[0]!.metricsUrl)).text();
  for (const stage of ['recall', 'rank', 'rerank'])
    expect(metrics).toMatch(
      new RegExp(`recsys_stage_duration_seconds_count\\{[^}]*version="${version}",stage="${stage}"`),
    );
  expect(metrics).toMatch(new RegExp(`recsys_routes_total\\{[^}]*version="${version}",route="cascade"\\} [1-9]`));
});

test('recsys recommend against the cascade champion prints the route and each stage with its graph', async () => {
  const stages = servedManifest.stages;
  const user = users.find((u) => u.history.length > 0)!;
  const out = await runCli([
    'recommend',
    '--address',
    replicaSlots('production')[0]!.address,
    '--user',
    user.userId,
    '--history',
    user.history.join(','),
    '--k',
    '5',
  ]);
  expect(out.code).toBe(0);
  expect(out.stdout).toContain(`${model} v${cascade.registered.version}`);
  const route = /Route:\s+(\S+)/.exec(out.stdout)?.[1];
  expect(['cheap', 'cascade', 'cheap-budget']).toContain(route);
  // The recall stage always runs; the ranking stages when the route is `cascade`.
  const ran = route === 'cascade' ? stages : stages.slice(0, 1);
  for (const s of ran) expect(out.stdout).toMatch(new RegExp(`${s.name}\\s+│?\\s*${s.sha256.slice(0, 16)}`));
});

test('under load at 5x the budget, the expensive path never exceeds its budget; the rest is served cheap', async () => {
  // Nothing is confident (a margin no score gap reaches): every request wants the cascade, only the budget says no.
  const rate = 20;
  const burst = 10;
  const serve = spawnServe(
    ['--model', model, '--version', cascade.registered.version, '--port', '0', '--metrics-port', '0', '--no-http'],
    {
      ...process.env,
      RECSYS_ROUTER: JSON.stringify({ confidence: { threshold: 1e9 }, budget: { ratePerSecond: rate, burst } }),
    },
  );
  try {
    const address = (await serve.waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/))[1]!;
    const metricsUrl = (await serve.waitFor(/Metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1]!;
    const started = performance.now();
    const load = await simulate({
      addresses: [address],
      users: expandPopulation(users, 2000),
      qps: 5 * rate,
      seconds: 10,
      concurrency: 32,
      timeoutMs: 2000,
      impressions: false,
    });
    const elapsedSeconds = (performance.now() - started) / 1000;
    expect(load.errors).toBe(0);
    const metrics = await (await fetch(metricsUrl)).text();
    const routes = (route: string) =>
      Number(new RegExp(`recsys_routes_total\\{[^}]*route="${route}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    const [expensive, budgetSpent, cheap] = [routes('cascade'), routes('cheap-budget'), routes('cheap')];
    // Only answers count (the load-time warm-up's routes are not answers), and the bucket holds at most `burst`.
    expect(expensive).toBeLessThanOrEqual(rate * elapsedSeconds + burst);
    expect(expensive).toBeGreaterThan(rate * 5); // the budget is used, not starved
    expect(budgetSpent).toBeGreaterThan(expensive); // at 5x the rate, most requests found the bucket empty
    expect(cheap).toBe(0);
    expect(expensive + budgetSpent + routes('fallback')).toBe(load.requests - load.errors);
  } finally {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
}, 120_000);

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
