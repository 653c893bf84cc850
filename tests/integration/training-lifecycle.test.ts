/**
 * The training activity's process lifecycle against the real stack: cancellation stops torchrun, and a worker that
 * dies mid-training is replaced by another that resumes from the last checkpoint in the object store.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { TrainHeartbeat } from '../../activities/contracts';
import { pendingActivities } from '../../cli/temporal';
import { createTrainingWorker } from '../../worker/create-worker';
import { continuousTraining } from '../../workflows/continuous-training';
import { uniqueName, useTemporal } from './stack';
import { groupAlive, smallDatasetSource, trainingInput, waitFor } from './training-fixture';

const ROOT = path.resolve(__dirname, '..', '..');
const temporal = useTemporal();

async function trainHeartbeat(handle: WorkflowHandle): Promise<TrainHeartbeat | undefined> {
  const act = (await pendingActivities(handle)).find((a) => a.type === 'train');
  return act?.heartbeat as TrainHeartbeat | undefined;
}

test('cancelling the workflow stops torchrun and its ranks', async () => {
  const model = uniqueName('it-cancel');
  const dataset = uniqueName('it-ds');
  const source = await smallDatasetSource(dataset);
  const taskQueue = uniqueName('it-cancel');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const handle = await temporal.client.workflow.start(continuousTraining, {
    taskQueue,
    workflowId: `train-${model}-${dataset}`,
    args: [trainingInput(model, dataset, source, { epochs: 500 })],
  });
  const pid = await worker.runUntil(async () => {
    const hb = await waitFor('training progress', async () => {
      const h = await trainHeartbeat(handle);
      return h?.stage === 'train' && h.pid && h.epoch !== undefined ? h : undefined;
    });
    expect(groupAlive(hb.pid!)).toBe(true);
    await handle.cancel();
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    return hb.pid!;
  });
  await waitFor('torchrun to exit', () => Promise.resolve(groupAlive(pid) ? undefined : true), 15_000);
  expect(groupAlive(pid)).toBe(false);
});

const EPOCHS = 40;

test('a worker killed mid-training is replaced and training resumes from the last checkpoint', async () => {
  const model = uniqueName('it-resume');
  const dataset = uniqueName('it-ds');
  // Large enough that an epoch takes a second or two, so the kill lands mid-training.
  // A dense log (120 days): data validation rightly fails sparse synthetic logs with long silent gaps.
  const source = await smallDatasetSource(dataset, { users: 2000, items: 500, interactions: 100_000, spanDays: 120 });
  const taskQueue = uniqueName('it-resume');

  // The first worker is a separate process, so it can be killed like a crashed machine.
  const doomed = spawn(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['worker/training-worker.ts'], {
    cwd: ROOT,
    env: { ...process.env, RECSYS_TASK_QUEUE: taskQueue },
    detached: true,
    stdio: 'ignore',
  });
  const killDoomed = () => {
    if (groupAlive(doomed.pid!)) process.kill(-doomed.pid!, 'SIGKILL');
  };
  let hb: TrainHeartbeat;
  let handle: WorkflowHandle<typeof continuousTraining>;
  try {
    handle = await temporal.client.workflow.start(continuousTraining, {
      taskQueue,
      workflowId: `train-${model}-${dataset}`,
      args: [
        trainingInput(model, dataset, source, { epochs: EPOCHS, batch_size: 128, embedding_dim: 64, hidden_dim: 128 }),
      ],
    });
    hb = await waitFor(
      'a checkpoint',
      async () => {
        const h = await trainHeartbeat(handle);
        if (!h && (await handle.describe()).status.name !== 'RUNNING') {
          const why = await handle.result().then(
            () => 'it completed',
            (e: unknown) => {
              let root = e as Error;
              while (root.cause instanceof Error) root = root.cause;
              return root.message;
            },
          );
          throw new Error(`workflow ended before the kill: ${why}`);
        }
        return h?.checkpointEpoch !== undefined && h.checkpointEpoch >= 1 && h.pid ? h : undefined;
      },
      180_000,
    );
  } finally {
    // Also on a failed wait: never leave the first worker behind.
    killDoomed();
  }
  // torchrun watches its supervisor and exits when the worker is gone: no orphan keeps training.
  await waitFor('orphaned torchrun to exit', () => Promise.resolve(groupAlive(hb.pid!) ? undefined : true), 20_000);

  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const result = await worker.runUntil(handle.result());
  // The kill landed mid-training, and the attempt that finished started from a checkpoint at least that far (a later
  // attempt, if the resumed one also died, starts from a later checkpoint still).
  expect(hb.checkpointEpoch!).toBeLessThan(EPOCHS);
  expect(result.training.resumedFromEpoch).toBeGreaterThanOrEqual(hb.checkpointEpoch!);
  expect(result.training.samplesPerSec).toBeGreaterThan(0);
  expect(result.training.epochs).toBe(EPOCHS);
  expect(result.registered.version).toBe('1');
});
