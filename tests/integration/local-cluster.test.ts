/**
 * The production training path on the local-cluster target, for real: two "nodes" are network namespaces on a bridge,
 * created by `tofu apply` (terraform/local-cluster), configured over SSH by the ansible roles, and trained on with
 * torchrun across them (gloo over the veths; namespaces share no loopback). Each test then checks that the saga left
 * nothing: no namespace, bridge, process, lease record or state directory. The saga's ordering is
 * tests/workflows/provision-training.test.ts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { PROVISION_STEPS, type ClusterSpec, type TrainHeartbeat } from '../../activities/contracts';
import { pendingActivities } from '../../cli/temporal';
import { clusterIdOf } from '../../lib/cluster-id';
import { config } from '../../lib/config';
import type { DatasetVersion } from '../../lib/dataset/ref';
import { MlflowClient } from '../../lib/mlflow/client';
import { createTrainingWorker } from '../../worker/create-worker';
import { continuousTraining } from '../../workflows/continuous-training';
import { clusterStateQuery, provisionWorkflowId, type ProvisionTrainingInput } from '../../workflows/provision-api';
import { clusterSweeper } from '../../workflows/cluster-sweeper';
import { provisionTraining } from '../../workflows/provision-training';
import { uniqueName, useTemporal } from './stack';
import { groupAlive, smallDatasetSource, trainingInput, waitFor } from './training-fixture';

const ROOT = path.resolve(__dirname, '..', '..');
const temporal = useTemporal();
const CLUSTER: ClusterSpec = { target: 'local-cluster', nodes: 2, maxLeaseHours: 1 };
const TRAIN = { embedding_dim: 16, hidden_dim: 32, history_len: 20, batch_size: 256 };

let dataset: DatasetVersion;
let model: string;

/** Everything of a cluster that could outlive its saga, described; [] when nothing is left. */
function leftovers(clusterId: string): string[] {
  const left: string[] = [];
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`rsc-${clusterId}-`));
  if (namespaces.length) left.push(`namespaces ${namespaces.join(', ')}`);
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => n === `rsb${clusterId}` || n.startsWith(`rsv${clusterId}n`));
  if (links.length) left.push(`links ${links.join(', ')}`);
  const dir = path.join(config().clustersDir, clusterId);
  if (existsSync(dir)) left.push(`state ${dir}`);
  const lease = path.join(config().clustersDir, '.leases', `recsys-${clusterId}.json`);
  if (existsSync(lease)) left.push(`lease record ${lease}`);
  // sshd (its config), the wrappers and torchrun (their paths) all name the cluster's directory.
  const procs = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(dir) && !l.includes('ps -eo'));
  if (procs.length) left.push(`processes ${procs.join(' | ')}`);
  return left;
}

/** The most bytes seen on the host side of rank 1's veth while `work` runs (the link goes away with the node). */
async function vethBytesDuring<T>(clusterId: string, work: Promise<T>): Promise<{ result: T; bytes: number }> {
  const file = `/sys/class/net/rsv${clusterId}n1/statistics/rx_bytes`;
  let bytes = 0;
  let done = false;
  const watch = (async () => {
    while (!done) {
      if (existsSync(file)) bytes = Math.max(bytes, Number(readFileSync(file, 'utf8').trim()) || 0);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  try {
    return { result: await work, bytes };
  } finally {
    done = true;
    await watch;
  }
}

async function trainHeartbeat(handle: WorkflowHandle): Promise<TrainHeartbeat | undefined> {
  const act = (await pendingActivities(handle)).find((a) => a.type === 'train');
  return act?.heartbeat as TrainHeartbeat | undefined;
}

/** Until the nodes report training progress (an epoch under way). */
const untilTraining = (handle: WorkflowHandle) =>
  waitFor(
    'multi-node training progress',
    async () => {
      const h = await trainHeartbeat(handle);
      return h?.stage === 'train' && h.epoch !== undefined ? h : undefined;
    },
    300_000,
  );

const provisionInput = (train: Record<string, unknown>, extra: Partial<ProvisionTrainingInput> = {}) => ({
  train: { model, dataset, config: { ...TRAIN, ...train }, nprocPerNode: 1 },
  cluster: CLUSTER,
  ...extra,
});

test('continuous training on two namespaces: gloo over the veths, the model registered, every node released', async () => {
  model = uniqueName('it-cluster');
  const name = uniqueName('it-ds');
  const source = await smallDatasetSource(name);
  const taskQueue = uniqueName('it-cluster');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const workflowId = `train-${model}-${name}`;
  const clusterId = clusterIdOf(provisionWorkflowId(workflowId));
  const handle = await temporal.client.workflow.start(continuousTraining, {
    taskQueue,
    workflowId,
    args: [{ ...trainingInput(model, name, source, { ...TRAIN, epochs: 2 }), nprocPerNode: 1, cluster: CLUSTER }],
  });
  const child = temporal.client.workflow.getHandle(provisionWorkflowId(workflowId));
  // Queries of a closed workflow are answered by a worker replaying it: ask while the worker runs.
  const { result: done, bytes } = await vethBytesDuring(
    clusterId,
    worker.runUntil(async () => {
      const r = await handle.result();
      return { r, state: await child.query(clusterStateQuery) };
    }),
  );
  const { r: result, state } = done;
  dataset = result.dataset;

  // DDP across the two nodes: one process per node, world size 2, and its gradients crossed the veth (MBs of them).
  expect(result.training.worldSize).toBe(2);
  expect(bytes).toBeGreaterThan(1_000_000);
  const version = await new MlflowClient().getModelVersion(model, result.registered.version);
  expect(version.version).toBe(result.registered.version);

  expect(state.phase).toBe('released');
  expect(state.nodes).toHaveLength(2);
  expect(state.undone).toEqual(['stop training', 'destroy nodes', 'delete lease']);
  expect(state.nodeHours).toBeGreaterThan(0);
  expect((await child.describe()).searchAttributes.RecsysClusterPhase).toEqual(['released']);
  expect(leftovers(clusterId)).toEqual([]);
}, 900_000);

test('a fault after each step of the saga leaves no namespace, process, lease record or state behind', async () => {
  expect(dataset).toBeDefined();
  const taskQueue = uniqueName('it-cluster-faults');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  await worker.runUntil(async () => {
    for (const step of PROVISION_STEPS) {
      const workflowId = uniqueName(`provision-fault-${step}`);
      const handle = await temporal.client.workflow.start(provisionTraining, {
        taskQueue,
        workflowId,
        args: [provisionInput({ epochs: 1 }, { injectFault: step })],
      });
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const state = await handle.query(clusterStateQuery);
      expect({ step, phase: state.phase, undoFailed: state.undoFailed }).toEqual({
        step,
        phase: 'failed',
        undoFailed: [],
      });
      expect({ step, left: leftovers(clusterIdOf(workflowId)) }).toEqual({ step, left: [] });
    }
  });
}, 900_000);

test('a cancel during multi-node training stops torchrun on every node and releases the cluster', async () => {
  const taskQueue = uniqueName('it-cluster-cancel');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const workflowId = uniqueName('provision-cancel');
  const clusterId = clusterIdOf(workflowId);
  const handle = await temporal.client.workflow.start(provisionTraining, {
    taskQueue,
    workflowId,
    args: [provisionInput({ epochs: 500 })],
  });
  const state = await worker.runUntil(async () => {
    await untilTraining(handle);
    // Both nodes train: each runs a torchrun under its wrapper.
    const training = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(path.join(config().clustersDir, clusterId)) && l.includes('torchrun'));
    expect(training.length).toBeGreaterThanOrEqual(2);
    await handle.cancel();
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    return handle.query(clusterStateQuery);
  });
  expect(state.undone).toEqual(['stop training', 'destroy nodes', 'delete lease']);
  expect(leftovers(clusterId)).toEqual([]);
}, 600_000);

test('a worker killed during multi-node training is replaced, and training resumes from the last checkpoint', async () => {
  const taskQueue = uniqueName('it-cluster-resume');
  const workflowId = uniqueName('provision-resume');
  const clusterId = clusterIdOf(workflowId);
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
  const handle = await temporal.client.workflow.start(provisionTraining, {
    taskQueue,
    workflowId,
    args: [provisionInput({ epochs: 12, batch_size: 64 })],
  });
  let hb: TrainHeartbeat;
  try {
    hb = await waitFor(
      'a checkpoint from the nodes',
      async () => {
        const h = await trainHeartbeat(handle);
        return h?.checkpointEpoch !== undefined && h.checkpointEpoch >= 1 ? h : undefined;
      },
      300_000,
    );
  } finally {
    killDoomed();
  }
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const result = await worker.runUntil(handle.result());
  // The retried attempt ran on the same nodes and started from a checkpoint at least as far as the kill saw.
  expect(result.training.resumedFromEpoch).toBeGreaterThanOrEqual(hb.checkpointEpoch!);
  expect(result.training.worldSize).toBe(2);
  expect(result.cluster.phase).toBe('released');
  expect(leftovers(clusterId)).toEqual([]);
}, 900_000);

test('a cluster whose workflow was terminated mid-training (no saga ran) is found and destroyed by the sweeper', async () => {
  const taskQueue = uniqueName('it-cluster-sweep');
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const workflowId = uniqueName('provision-terminated');
  const clusterId = clusterIdOf(workflowId);
  const handle = await temporal.client.workflow.start(provisionTraining, {
    taskQueue,
    workflowId,
    args: [provisionInput({ epochs: 500 })],
  });
  const swept = await worker.runUntil(async () => {
    await untilTraining(handle);
    // What a lost controller leaves: terminate runs no code, so the nodes keep running with no one to release them.
    await handle.terminate('test: the controller is gone');
    expect(leftovers(clusterId).length).toBeGreaterThan(0);
    return temporal.client.workflow.execute(clusterSweeper, {
      taskQueue,
      workflowId: uniqueName('cluster-sweep'),
      args: [{}],
    });
  });
  const mine = swept.find((s) => s.clusterId === clusterId);
  expect(mine?.reason).toBe(`owner ${workflowId} is terminated`);
  expect(mine?.removed).toEqual(expect.arrayContaining(['nodes (tofu destroy)', 'namespaces', 'state']));
  await waitFor(
    'the cluster to be gone',
    () => Promise.resolve(leftovers(clusterId).length ? undefined : true),
    30_000,
  );
  expect(leftovers(clusterId)).toEqual([]);
}, 600_000);
