import { MockActivityEnvironment } from '@temporalio/testing';
import { register } from '../../activities/registry';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { createTrainingWorker } from '../../worker/create-worker';
import { continuousTraining, progressQuery } from '../../workflows/continuous-training';
import { uniqueName, useTemporal } from './stack';
import { smallDatasetSource, trainingInput } from './training-fixture';

const temporal = useTemporal();
const mlflow = new MlflowClient();

test('continuousTraining completes on a small dataset and registers exactly one version', async () => {
  const model = uniqueName('it-two-tower');
  const dataset = uniqueName('it-ds');
  const source = await smallDatasetSource(dataset);
  const taskQueue = uniqueName('it-ct');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const workflowId = `train-${model}-${dataset}`;
  const handle = await temporal.client.workflow.start(continuousTraining, {
    taskQueue,
    workflowId,
    args: [trainingInput(model, dataset, source, { epochs: 2 })],
  });
  // Queries run on a worker, so ask for the final progress while it is still polling.
  const [result, progress] = await worker.runUntil(async () => {
    const r = await handle.result();
    return [r, await handle.query(progressQuery)] as const;
  });

  expect(result.dataset.reused).toBe(false);
  expect(result.training).toMatchObject({ epochs: 2, worldSize: 2, resumedFromEpoch: 0 });
  for (const m of ['recall@10', 'ndcg@10', 'hr@10', 'mrr']) {
    expect(result.evaluation.model[m]).toBeGreaterThanOrEqual(0);
    expect(result.evaluation.popularity[m]).toBeGreaterThanOrEqual(0);
  }
  expect(result.exported.maxAbsDiff).toBeLessThanOrEqual(result.exported.tolerance);
  expect(result.registered.version).toBe('1');
  expect(result.registered.aliases).toContain('challenger');

  expect(progress.currentStep).toBe('done');
  expect(progress.steps.map((s) => s.status)).toEqual(['done', 'done', 'done', 'done', 'done']);

  const versions = await mlflow.searchModelVersions(`name = '${model}'`);
  expect(versions).toHaveLength(1);
  const tags = tagsOf(versions[0]!);
  expect(tags).toMatchObject({
    'recsys.temporal.workflow_id': workflowId,
    'recsys.dataset.version': result.dataset.version,
    'recsys.dataset.uri': result.dataset.uri,
    'recsys.onnx.uri': result.exported.onnxUri,
    'recsys.onnx.sha256': result.exported.sha256,
  });
  const run = await mlflow.getRun(result.registered.mlflowRunId);
  expect(tagsOf(run.data ?? {})).toMatchObject({ 'recsys.dataset.version': result.dataset.version });

  // A retried registration (same inputs) finds the existing run and version instead of creating new ones.
  const desc = await handle.describe();
  const again = await new MockActivityEnvironment().run(register, {
    model,
    workflowId,
    workflowRunId: desc.runId,
    trigger: 'manual',
    dataset: result.dataset,
    trainConfig: trainingInput(model, dataset, source, { epochs: 2 }).train!,
    training: result.training,
    evaluation: result.evaluation,
    exported: result.exported,
  });
  expect(again).toMatchObject({ version: '1', mlflowRunId: result.registered.mlflowRunId });
  expect(await mlflow.searchModelVersions(`name = '${model}'`)).toHaveLength(1);
});
