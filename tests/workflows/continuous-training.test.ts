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
});
