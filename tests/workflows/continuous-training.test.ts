/**
 * The continuousTraining workflow's logic with mocked activities on the time-skipping test server: reused steps show
 * as `reused`, a gate rejection completes normally without a rollout (and a pass starts one), and a dataset that
 * fails validation fails the workflow before anything trains.
 */
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  continuousTraining,
  environmentLease,
  progressQuery,
  rolloutStateQuery,
  type ContinuousTrainingInput,
  type StepState,
  type TrainingProgress,
} from '../../workflows';
import { environmentLeaseId } from '../../workflows/environment-lease';
import { uniqueId, useWorkflowTestEnv, waitForQuery, type ActivityCall, type MockActivities } from './harness';

const t = useWorkflowTestEnv();

import { trainingActivities, VERSION } from './training-mocks';

/** The documented id of the rollout of a model version (one per version); the control test checks it is used. */
const rolloutWorkflowId = (model: string) => `rollout-${model}-v${VERSION}`;

async function run(mocks: MockActivities, input: Partial<ContinuousTrainingInput> = {}) {
  const { taskQueue, calls } = await t.worker(mocks);
  const model = uniqueId('model');
  const handle = await t.env().client.workflow.start(continuousTraining, {
    taskQueue,
    workflowId: uniqueId(`train-${model}`),
    args: [
      {
        model,
        dataset: { name: 'ml-test', sources: ['s3://recsys/raw/ml-test/part-0.tsv'], etl: { format: 'tsv' } },
        trigger: 'manual',
        ...input,
      },
    ],
  });
  return { handle, calls, model, taskQueue };
}

const statuses = (p: TrainingProgress): Record<string, StepState['status']> =>
  Object.fromEntries(p.steps.map((s) => [s.name, s.status]));
const names = (calls: ActivityCall[]) => calls.map((c) => c.name);

describe('continuousTraining workflow (mocked activities, time skipping)', () => {
  test('the same data and config again: every cached step shows as reused', async () => {
    const { handle } = await run(trainingActivities({ data: true, model: true }), { autoRollout: false });
    const result = await handle.result();
    expect(result.outcome).toBe('passed');
    const progress = await handle.query(progressQuery);
    expect(progress.currentStep).toBe('done');
    expect(statuses(progress)).toEqual({
      plan: 'skipped',
      etl: 'reused',
      validate: 'reused',
      train: 'reused',
      evaluate: 'reused',
      export: 'reused',
      quantize: 'reused',
      gates: 'done',
      register: 'done',
      rollout: 'skipped',
    });
  });

  test('new training on the same data (force): the data steps reused, the model steps done', async () => {
    const { handle, calls } = await run(trainingActivities({ data: true, model: false }), {
      autoRollout: false,
      force: true,
    });
    await handle.result();
    expect(statuses(await handle.query(progressQuery))).toMatchObject({
      etl: 'reused',
      validate: 'reused',
      train: 'done',
      evaluate: 'done',
      export: 'done',
      quantize: 'done',
    });
    // `force` asks the training activity to rerun under this workflow's id.
    expect(calls.find((c) => c.name === 'train')?.input.rerun).toBe(handle.workflowId);
  });

  test('rejected by the gates: completes with outcome rejected, registered, and no rollout', async () => {
    const summary = 'ndcg@10 lower bound 0.031 < floor 0.05';
    const { handle, calls, model } = await run(
      trainingActivities(
        { data: false, model: false },
        {
          checkGates: () => ({ passed: false, summary, results: [] }),
        },
      ),
    );
    const result = await handle.result();
    expect(result.outcome).toBe('rejected');
    expect(result.rollout).toBeUndefined();
    const progress = await handle.query(progressQuery);
    expect(progress.outcome).toBe('rejected');
    expect(progress.steps.find((s) => s.name === 'rollout')).toMatchObject({
      status: 'skipped',
      summary: `kept as challenger: ${summary}`,
    });
    // Registered (as challenger, the gate results in its tags), but nothing deployed and no rollout workflow.
    expect(names(calls)).toContain('register');
    expect(names(calls)).not.toContain('describeVersion');
    expect(names(calls)).not.toContain('ensureEnvironment');
    await expect(t.env().client.workflow.getHandle(rolloutWorkflowId(model)).describe()).rejects.toThrow(
      WorkflowNotFoundError,
    );
  });

  test('passing the gates starts the rollout of the registered version (control for the above)', async () => {
    // Staging is held by someone else, so the rollout waits on a timer, with no activity or child in flight, and can
    // be ended there. (The test server leaks its time-skipping lock when an abandoned child closes after its parent,
    // so the rollout is not let run to its end; its own logic has its tests in rollout.test.ts.)
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const { handle, model, taskQueue } = await run(
      trainingActivities({ data: false, model: false }, { environmentPort: (i) => ({ env: i.env, port }) }),
    );
    const staging = await t.env().client.workflow.start(environmentLease, {
      taskQueue,
      workflowId: environmentLeaseId('staging', port),
      args: [{ env: 'staging', holder: 'another rollout', maxSeconds: 3600 }],
    });
    const result = await handle.result();
    const rolloutId = rolloutWorkflowId(model);
    expect(result.outcome).toBe('rollout-started');
    expect(result.rollout).toEqual({ workflowId: rolloutId, alreadyStarted: false });
    const child = t.env().client.workflow.getHandle(rolloutId);
    try {
      const s = await waitForQuery(
        child,
        () => child.query(rolloutStateQuery),
        (x) => x.phase === 'waiting-for-environment',
        { what: 'the rollout to wait for staging' },
      );
      expect(s).toMatchObject({ model, version: VERSION });
    } finally {
      await child.terminate('test done');
      await staging.terminate('test done');
    }
  });

  test('a dataset that fails validation fails the workflow with DataValidationError before training', async () => {
    const reportUri = 's3://recsys/datasets/ml-test/d41d8cd98f00/validation.json';
    const { handle, calls } = await run(
      trainingActivities(
        { data: false, model: false },
        {
          validateDataset: () => ({
            status: 'fail',
            summary: 'volume dropped 62% vs the previous version',
            reportUri,
            anomalies: [{ check: 'volume', severity: 'fail' }],
            reused: false,
          }),
        },
      ),
    );
    const err: unknown = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect(cause).toMatchObject({ type: 'DataValidationError', nonRetryable: true });
    expect(cause?.message).toContain('volume dropped 62% vs the previous version');
    expect(cause?.message).toContain(reportUri);
    expect(names(calls)).toEqual(['recordRecipe', 'etl', 'validateDataset']);
    const progress = await handle.query(progressQuery);
    expect(progress.currentStep).toBe('failed');
    expect(statuses(progress)).toMatchObject({
      etl: 'done',
      validate: 'failed',
      train: 'pending',
      register: 'pending',
    });
  });

  test("a retrain names no data: planned from the champion, the plan's sources trained, lineage registered", async () => {
    const sources = [
      's3://recsys/raw/ml-test/part-0.tsv',
      { uri: 's3://recsys/feedback/m/1-2.jsonl', format: 'recsys-feedback' },
    ];
    const { handle, calls } = await run(
      trainingActivities(
        { data: false, model: false },
        {
          planRetrain: (i) => ({
            recipe: {
              dataset: { name: 'ml-test', sources, etl: { format: 'tsv' } },
              train: { epochs: 1 },
              autoRollout: false,
              feedbackUntilMs: 2,
            },
            basedOn: {
              championVersion: '6',
              datasetVersion: 'aaa',
              recipeUri: `s3://recsys/recipes/${String(i.model)}.json`,
            },
            feedback: { uri: sources[1], rows: 42, fromMs: 1, toMs: 2 },
          }),
        },
      ),
      {
        dataset: undefined,
        trigger: 'drift',
        cause: {
          driftReportUri: 's3://recsys/drift/m/production/reports/x.json',
          requestedBy: 'drift-monitor-m-production',
        },
      },
    );
    const result = await handle.result();
    expect(result.outcome).toBe('passed');
    expect(result.plan?.feedback.rows).toBe(42);
    const progress = await handle.query(progressQuery);
    expect(progress.steps.find((s) => s.name === 'plan')).toMatchObject({ status: 'done' });
    expect(progress.steps.find((s) => s.name === 'plan')?.summary).toMatch(/from champion v6 .* \+ 42 served feedback/);
    expect(calls.find((c) => c.name === 'etl')?.input.sources).toEqual(sources);
    expect(calls.find((c) => c.name === 'train')?.input.config).toEqual({ epochs: 1 });
    const recorded = calls.find((c) => c.name === 'recordRecipe')?.input;
    expect(recorded?.recipe).toMatchObject({ dataset: { sources }, feedbackUntilMs: 2 });
    const register = calls.find((c) => c.name === 'register')?.input;
    expect(register?.trigger).toBe('drift');
    expect(register?.cause).toEqual({
      driftReportUri: 's3://recsys/drift/m/production/reports/x.json',
      requestedBy: 'drift-monitor-m-production',
    });
    expect(register?.recipeUri).toBe(`s3://test/recipes/${handle.workflowId}.json`);
  });

  test('a cascade is quantized like any export: a stage kept int8 makes the chosen manifest the served artefact', async () => {
    const exportManifest = 's3://recsys/training/k1/cascade-top100.json';
    const chosenManifest = 's3://recsys/training/k1/cascade-top100-int8-0123456789abcdef.json';
    const stage = (name: string, ships: string, int8Stages: string[]) => ({
      name,
      ships,
      reason: `${name} ${ships}`,
      int8Uri: `s3://recsys/training/k1/stage-${name}-int8-aa.onnx`,
      p50Ratio: ships === 'int8' ? 0.6 : 1.02,
      p50RatioLo: 0.5,
      p50RatioHi: ships === 'int8' ? 0.7 : 1.1,
      floatP50Ms: 0.5,
      int8P50Ms: 0.3,
      int8Stages,
      ndcgAt10: 0.2,
      relativeNdcgChange: -0.001,
    });
    const { handle, calls } = await run(
      trainingActivities(
        { data: false, model: false },
        {
          exportOnnx: () => ({
            kind: 'cascade',
            onnxUri: exportManifest,
            sha256: 'aa',
            topK: 20,
            maxAbsDiff: 1e-6,
            tolerance: 1e-4,
            stages: [],
            reused: false,
          }),
          quantize: () => ({
            kind: 'cascade',
            ships: 'int8',
            reason: 'recall float | rank int8 | rerank float',
            int8Uri: chosenManifest,
            int8Sha256: 'cc',
            float: { ndcgAt10: 0.2, p50Ms: 1, p99Ms: 2 },
            int8: { ndcgAt10: 0.1998, p50Ms: 0.8, p99Ms: 1.8 },
            relativeNdcgChange: -0.001,
            tolerance: 0.01,
            stages: [
              stage('recall', 'float', ['recall']),
              stage('rank', 'int8', ['rank']),
              stage('rerank', 'float', ['rank', 'rerank']),
            ],
            reused: false,
          }),
        },
      ),
      { autoRollout: false },
    );
    const result = await handle.result();
    expect(result.quantization?.ships).toBe('int8');
    expect(statuses(await handle.query(progressQuery)).quantize).toBe('done');
    expect(calls.find((c) => c.name === 'quantize')?.input.exported).toMatchObject({ kind: 'cascade' });
    const register = calls.find((c) => c.name === 'register')?.input;
    expect(register?.serving).toEqual({ onnxUri: chosenManifest, sha256: 'cc', precision: 'int8' });
    // Each stage's decision is logged beside the cascade's, as the version's quantization tags.
    expect(register?.quantization).toMatchObject({
      ships: 'int8',
      int8_uri: chosenManifest,
      'recall.ships': 'float',
      'rank.ships': 'int8',
      'rank.p50_ratio': 0.6,
      'rank.p50_ratio_hi': 0.7,
      'rank.relative_ndcg_change': -0.001,
      'rerank.ships': 'float',
      'rerank.reason': 'rerank float',
    });
  });

  test('a cascade whose stages all stay fp32 serves the export manifest', async () => {
    const exportManifest = 's3://recsys/training/k1/cascade-top100.json';
    const { handle, calls } = await run(
      trainingActivities(
        { data: false, model: false },
        {
          exportOnnx: () => ({
            kind: 'cascade',
            onnxUri: exportManifest,
            sha256: 'aa',
            topK: 20,
            maxAbsDiff: 1e-6,
            tolerance: 1e-4,
            reused: false,
          }),
          quantize: () => ({
            kind: 'cascade',
            ships: 'float',
            reason: 'no stage faster beyond noise',
            int8Uri: 's3://recsys/training/k1/cascade-top100-int8-0123456789abcdef.json',
            int8Sha256: 'cc',
            float: { ndcgAt10: 0.2, p50Ms: 1, p99Ms: 2 },
            int8: { ndcgAt10: 0.2, p50Ms: 1, p99Ms: 2 },
            stages: [],
            reused: false,
          }),
        },
      ),
      { autoRollout: false },
    );
    await handle.result();
    const register = calls.find((c) => c.name === 'register')?.input;
    expect(register?.serving).toEqual({ onnxUri: exportManifest, sha256: 'aa', precision: 'fp32' });
  });
});
