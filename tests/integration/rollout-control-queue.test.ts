/**
 * Rollout control never queues behind training: with both of the worker's training slots held by long steps, a
 * rollout still stages, canaries, and rolls back at once when rejected — its activities run on the control queue.
 * The platform's real worker (createTrainingWorker) on the stack's Temporal; the activities are stand-ins, since what
 * is under test is where they run, not what they do.
 */
import { Context } from '@temporalio/activity';
import { createTrainingWorker, type RecsysWorker } from '../../worker/create-worker';
import { continuousTraining } from '../../workflows/continuous-training';
import { rollout } from '../../workflows/rollout';
import { rejectUpdate, rolloutStateQuery, type RolloutState } from '../../workflows/rollout-api';
import { uniqueName, useTemporal } from './stack';
import { waitFor } from './training-fixture';

// Declared before useTemporal's hooks so that it runs first: the worker must stop before its connection closes.
afterAll(async () => {
  releaseTraining();
  worker?.shutdown();
  await running;
});

const temporal = useTemporal();

let worker: RecsysWorker;
let running: Promise<void>;
let releaseTraining!: () => void;
const trainingReleased = new Promise<void>((resolve) => (releaseTraining = resolve));
let trainingSteps = 0;
const calls: string[] = [];

/** A training step that holds its slot, heartbeating, until the test lets it go or it is cancelled. */
async function busyEtl(): Promise<never> {
  const ctx = Context.current();
  trainingSteps += 1;
  const beat = setInterval(() => ctx.heartbeat('busy'), 500);
  try {
    await Promise.race([trainingReleased, ctx.cancelled]);
    throw new Error('released by the test');
  } finally {
    clearInterval(beat);
  }
}

const record =
  <T>(name: string, result: T) =>
  (input: { env?: string; weights?: Record<string, number> }) => {
    calls.push(`${name}${input.env ? ` ${input.env}` : ''}${input.weights ? ` ${JSON.stringify(input.weights)}` : ''}`);
    return Promise.resolve(result);
  };

const activities = {
  recordRecipe: () => Promise.resolve('s3://b/recipes/r.json'),
  etl: busyEtl,
  describeVersion: record('describeVersion', {
    version: '2',
    modelUri: 'm',
    dataset: { name: 'd', version: 'v', uri: 's3://b/datasets/d/v/' },
  }),
  currentChampion: record('currentChampion', {
    version: '1',
    modelUri: 'm',
    dataset: { name: 'd', version: 'v', uri: 's3://b/datasets/d/v/' },
  }),
  environmentPort: (i: { env: string }) =>
    Promise.resolve({ env: i.env, port: 30_000 + Math.floor(Math.random() * 1000) }),
  leaseHolder: () => Promise.resolve(undefined),
  ensureEnvironment: record('ensureEnvironment', { env: 'x', replicas: [] }),
  stopEnvironment: record('stopEnvironment', { env: 'x', stopped: [] }),
  runLoadTest: record('runLoadTest', {
    requests: 100,
    errors: 0,
    errorRate: 0,
    p50Ms: 1,
    p99Ms: 2,
    achievedQps: 50,
    dropped: 0,
    clicks: 10,
    ctr: 0.1,
    perVersion: {},
  }),
  scrapeVersionMetrics: record('scrapeVersionMetrics', { at: '', versions: {}, env: 'production', replicas: 1 }),
  analyseCanaryWindow: record('analyseCanaryWindow', {
    result: { outcome: 'pass', checks: [], summary: 'pass', canary: {}, baseline: {} },
    window: { sinceMs: 0, untilMs: 1 },
  }),
  tagVersion: record('tagVersion', undefined),
  promote: record('promote', { model: 'm', version: '2', changed: true }),
  restoreChampion: record('restoreChampion', { restored: true }),
};

let taskQueue: string;

beforeAll(async () => {
  taskQueue = uniqueName('it-control');
  worker = await createTrainingWorker({ taskQueue, connection: temporal.native, activities });
  running = worker.run();
});

test('a rejected rollout rolls back at once while training holds every training slot', async () => {
  const trainings = await Promise.all(
    [1, 2].map((i) =>
      temporal.client.workflow.start(continuousTraining, {
        taskQueue,
        workflowId: uniqueName(`it-control-train-${i}`),
        args: [{ model: 'm', dataset: { name: 'd', sources: ['s3://b/x.csv'], etl: { format: 'csv' } } }],
      }),
    ),
  );
  await waitFor('both training slots busy', () => Promise.resolve(trainingSteps === 2 || undefined), 30_000);

  const handle = await temporal.client.workflow.start(rollout, {
    taskQueue,
    workflowId: uniqueName('it-control-rollout'),
    args: [
      {
        model: 'm',
        version: '2',
        config: {
          staging: { loadTest: { qps: 10, seconds: 1 } },
          canary: { steps: [{ weight: 10, bakeSeconds: 1 }] },
          approval: { timeoutSeconds: 600 },
        },
      },
    ],
  });
  await waitFor(
    'the rollout to wait for approval',
    async () => ((await handle.query(rolloutStateQuery)).phase === 'awaiting-approval' ? true : undefined),
    60_000,
  );
  const started = Date.now();
  await handle.executeUpdate(rejectUpdate, { args: [{ by: 'jest', reason: 'roll it back' }] });
  const result = await handle.result();
  const rollbackSeconds = (Date.now() - started) / 1000;
  console.log(`rollback landed ${rollbackSeconds.toFixed(2)} s after the rejection, both training slots busy`);

  expect(result.outcome).toBe('rolled-back');
  expect(calls).toContain('ensureEnvironment production {"1":100}');
  // The trainings never moved: their steps still hold both slots.
  expect(trainingSteps).toBe(2);
  for (const t of trainings) expect((await t.describe()).status.name).toBe('RUNNING');
  for (const t of trainings) await t.cancel();
  const state: RolloutState = await handle.query(rolloutStateQuery);
  expect(state.events.map((e) => e.what)).toContainEqual(expect.stringMatching(/^undone: production traffic back/));
}, 180_000);
