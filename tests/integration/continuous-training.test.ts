/**
 * continuousTraining against the real stack: gates on confidence intervals, step reuse, a weakened model kept as
 * challenger, a planted data anomaly stopped before training. Tests run in order and share one model name.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { config } from '../../lib/config';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { objectStore } from '../../lib/object-store';
import { RecsysStage } from '../../lib/search-attributes';
import { createTrainingWorker } from '../../worker/create-worker';
import { continuousTraining } from '../../workflows/continuous-training';
import {
  progressQuery,
  type ContinuousTrainingInput,
  type ContinuousTrainingResult,
  type TrainingProgress,
} from '../../workflows/training-api';
import { uniqueName, useTemporal } from './stack';
import { LEARNABLE_SHAPE, LEARNING_CONFIG, smallDatasetSource, trainingInput } from './training-fixture';

const { promote, register } = createActivities();

const temporal = useTemporal();
const mlflow = new MlflowClient();
const model = uniqueName('it-ct');
const dataset = uniqueName('it-ds');
const GOOD = LEARNING_CONFIG;
let source: string;
let first: { result: ContinuousTrainingResult; seconds: number };

beforeAll(async () => {
  source = await smallDatasetSource(dataset, LEARNABLE_SHAPE);
});

/** Runs `body` with a worker polling a private task queue (queries need a live worker too). */
async function withWorker<T>(body: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = uniqueName('it-ct');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  return worker.runUntil(body(taskQueue));
}

function start(taskQueue: string, input: ContinuousTrainingInput, id: string) {
  return temporal.client.workflow.start(continuousTraining, { taskQueue, workflowId: id, args: [input] });
}

function runToEnd(input: ContinuousTrainingInput, id = uniqueName(`train-${model}`)) {
  return withWorker(async (taskQueue) => {
    const t0 = Date.now();
    const handle = await start(taskQueue, input, id);
    const result = await handle.result();
    const seconds = (Date.now() - t0) / 1000;
    const progress: TrainingProgress = await handle.query(progressQuery);
    return { handle, result, seconds, progress };
  });
}

const statuses = (p: TrainingProgress) => Object.fromEntries(p.steps.map((s) => [s.name, s.status]));

test('a good model passes the gates on confidence intervals and is registered as challenger with its figures', async () => {
  const { result, seconds, progress, handle } = await runToEnd(trainingInput(model, dataset, source, GOOD));
  first = { result, seconds };

  expect(result.gates.summary).toMatch(/^all gates passed/);
  expect(result.outcome).toBe('passed'); // autoRollout is off in these tests: only a rollout moves `champion`
  expect(result.validation.status).not.toBe('fail');
  expect(result.gates.passed).toBe(true);
  const pop = result.gates.checks.find((c) => c.gate === 'vs popularity');
  expect(pop?.outcome).toBe('pass');
  expect(result.gates.checks.find((c) => c.gate === 'vs champion')?.outcome).toBe('skipped');
  // The popularity gate judged the lower bound of the paired difference, and that bound is above 0.
  const diff = result.evaluation.differences.vsPopularity['ndcg@10']!;
  expect(diff.lo).toBeGreaterThan(0);
  expect(diff.lo).toBeLessThanOrEqual(diff.point);

  expect(statuses(progress)).toEqual({
    plan: 'skipped',
    etl: 'done',
    validate: 'done',
    train: 'done',
    evaluate: 'done',
    export: 'done',
    quantize: 'done',
    gates: 'done',
    register: 'done',
    rollout: 'skipped',
  });
  expect(result.registered).toMatchObject({ version: '1', aliases: ['challenger'], gatesPassed: true });

  const mv = await mlflow.getModelVersion(model, '1');
  const tags = tagsOf(mv);
  const q = result.quantization!; // a single retrieval graph is always quantized
  expect(result.exported.kind).toBe('single');
  const shipped =
    q.ships === 'int8'
      ? { uri: q.int8Uri, sha: q.int8Sha256 }
      : { uri: result.exported.onnxUri, sha: result.exported.sha256 };
  expect(tags).toMatchObject({
    'recsys.gates': 'passed',
    'recsys.onnx.uri': shipped.uri,
    'recsys.onnx.sha256': shipped.sha,
    'recsys.onnx.precision': q.ships === 'int8' ? 'int8' : 'fp32',
    'recsys.onnx.fp32.uri': result.exported.onnxUri,
    'recsys.quantization.ships': q.ships,
    'recsys.quantization.int8_sha256': q.int8Sha256,
    'recsys.model.family': 'two_tower',
  });
  expect(tags['recsys.gate.vs_popularity']).toMatch(/^pass: /);
  const sa = (await handle.describe()).typedSearchAttributes;
  expect(sa.get(RecsysStage)).toBe('passed-gates');

  // A retried registration (same inputs) finds the existing run and version instead of creating new ones.
  const again = await new MockActivityEnvironment().run(register, {
    model,
    workflowId: 'retry',
    workflowRunId: 'retry',
    trigger: 'manual',
    dataset: result.dataset,
    trainConfig: trainingInput(model, dataset, source, GOOD).train!,
    training: result.training,
    evaluation: result.evaluation,
    exported: result.exported,
    serving: {
      onnxUri: shipped.uri,
      sha256: shipped.sha,
      precision: q.ships === 'int8' ? ('int8' as const) : ('fp32' as const),
    },
    gates: result.gates,
  });
  expect(again).toMatchObject({ version: '1', mlflowRunId: result.registered.mlflowRunId });
  expect(await mlflow.searchModelVersions(`name = '${model}'`)).toHaveLength(1);
});

test('a re-run with unchanged inputs reuses every finished step and takes a fraction of the time', async () => {
  const { result, seconds, progress } = await runToEnd(trainingInput(model, dataset, source, GOOD));
  expect(statuses(progress)).toMatchObject({
    etl: 'reused',
    validate: 'reused',
    train: 'reused',
    evaluate: 'reused',
    export: 'reused',
    quantize: 'reused',
  });
  expect(result.training.trainingKey).toBe(first.result.training.trainingKey);
  expect(result.registered.version).toBe('1');
  expect(result.evaluation.model['ndcg@10']).toBe(first.result.evaluation.model['ndcg@10']);
  expect(seconds).toBeLessThan(first.seconds / 2);
  console.log(`first run ${first.seconds.toFixed(1)} s, re-run ${seconds.toFixed(1)} s`);
});

test('force trains afresh: a new training key, and evaluation, export and quantization run again', async () => {
  const { result, progress } = await runToEnd({ ...trainingInput(model, dataset, source, GOOD), force: true });
  expect(result.training.trainingKey).not.toBe(first.result.training.trainingKey);
  expect(statuses(progress)).toMatchObject({ etl: 'reused', train: 'done', evaluate: 'done', quantize: 'done' });
  // Same seed, same data, same config: the same metrics (the run is reproducible), within float noise.
  expect(result.evaluation.model['ndcg@10']).toBeCloseTo(first.result.evaluation.model['ndcg@10']!, 4);
  expect(result.registered.version).toBe('2');
});

test('a weakened model fails the gates, stays challenger, and the tags and the Web UI say which gate failed', async () => {
  // v1 plays the champion an approved rollout would have made it.
  await new MockActivityEnvironment().run(promote, { model, version: '1', reason: 'test setup', by: 'jest' });

  const { result, progress, handle } = await runToEnd(
    trainingInput(model, dataset, source, { epochs: 1, max_steps_per_epoch: 1 }),
  );
  expect(result.outcome).toBe('rejected');
  expect(result.gates.passed).toBe(false);
  const failed = result.gates.checks.filter((c) => c.outcome === 'fail').map((c) => c.gate);
  expect(failed).toEqual(expect.arrayContaining(['vs popularity', 'vs champion v1']));
  expect(result.evaluation.baselineVersion).toBe('1');

  const version = result.registered.version;
  const tags = tagsOf(await mlflow.getModelVersion(model, version));
  expect(tags['recsys.gates']).toBe('failed');
  expect(tags['recsys.gate.vs_popularity']).toMatch(/^fail: Δndcg@10 lower bound -?\d/);
  expect(tags['recsys.gate.vs_champion_v1']).toMatch(/^fail: /);
  expect(tags['recsys.promotion_decision']).toMatch(/^kept as challenger: failed \d+ gate\(s\): /);
  const champion = await mlflow.getVersionByAlias(model, 'champion');
  expect(champion?.version).toBe('1');
  expect((await mlflow.getVersionByAlias(model, 'challenger'))?.version).toBe(version);

  const rollout = progress.steps.find((s) => s.name === 'rollout');
  expect(rollout).toMatchObject({ status: 'skipped' });
  expect(rollout?.summary).toMatch(/^kept as challenger: failed .*vs popularity/);
  const desc = await handle.describe();
  expect(desc.typedSearchAttributes.get(RecsysStage)).toBe('rejected');
  expect(desc.status.name).toBe('COMPLETED'); // a clear outcome, not an error
});

test('a dataset version with a broken item-id mapping is stopped before training with a report naming it', async () => {
  const store = objectStore();
  const csv = (await store.getBytes(source))!.toString('utf8').trimEnd().split('\n');
  const broken = [csv[0], ...csv.slice(1).map((line) => line.replace(/^([^,]*),([^,]*),/, '$1,x$2,'))].join('\n');
  const brokenUri = `s3://${config().bucket}/raw/${dataset}/broken-ids.csv`;
  await store.putBytes(brokenUri, `${broken}\n`, 'text/csv');

  const id = uniqueName(`train-${model}-broken`);
  const { handle, err, progress } = await withWorker(async (taskQueue) => {
    const h = await start(taskQueue, trainingInput(model, dataset, brokenUri, GOOD), id);
    const e = await h.result().then(
      () => undefined,
      (x: unknown) => x,
    );
    return { handle: h, err: e, progress: await h.query(progressQuery) };
  });
  expect(err).toBeInstanceOf(WorkflowFailedError);
  let root = err as Error;
  while (root.cause instanceof Error) root = root.cause;
  expect(root.message).toMatch(/failed validation: FAIL: .*unseen/i);
  expect(root.message).toMatch(/report: s3:\/\/.*validation\.json/);

  expect(statuses(progress)).toMatchObject({ etl: 'done', validate: 'failed', train: 'pending' });
  // Never reached training: no train activity was even scheduled.
  const history = await handle.fetchHistory();
  const scheduled = (history.events ?? [])
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
    .filter(Boolean);
  // The recipe is recorded first (what was asked), then the data is built and stopped.
  expect(scheduled).toEqual(['recordRecipe', 'etl', 'validateDataset']);
});

test('the sequential family goes through the same pipeline: evaluation, export, quantization, gates, registration', async () => {
  const { result, progress } = await runToEnd(
    trainingInput(model, dataset, source, { ...LEARNING_CONFIG, model: 'sequential', epochs: 1, n_layers: 1 }),
  );
  expect(statuses(progress)).toMatchObject({ train: 'done', evaluate: 'done', export: 'done', quantize: 'done' });
  expect(result.training.config).toMatchObject({ model: 'sequential', n_layers: 1 });
  expect(result.evaluation.model['ndcg@10']).toBeGreaterThan(0);
  expect(result.exported.maxAbsDiff).toBeLessThanOrEqual(result.exported.tolerance);
  expect(result.quantization!.int8.ndcgAt10).toBeGreaterThan(0);
  expect(['int8', 'float']).toContain(result.quantization!.ships);
  // Judged by the same gates as any family, against the same champion.
  expect(result.gates.checks.some((c) => c.gate.startsWith('vs champion'))).toBe(true);
  const tags = tagsOf(await mlflow.getModelVersion(model, result.registered.version));
  expect(tags['recsys.model.family']).toBe('sequential');
  expect(tags['recsys.gates']).toBe(result.gates.passed ? 'passed' : 'failed');
});
