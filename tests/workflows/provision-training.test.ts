/**
 * provisionTraining with mocked activities on the time-skipping test server: the saga's order. Every step that
 * changed something is undone, once, in reverse order, whichever step fails, after success and after a cancel during
 * training; an undo that fails does not stop the others. (The real local path's cleanup is
 * tests/integration/local-cluster.test.ts.)
 */
import { WorkflowFailedError } from '@temporalio/client';
import { clusterStateQuery, provisionTraining, type ProvisionTrainingInput } from '../../workflows';
import { blockingActivity, fatal, uniqueId, useWorkflowTestEnv, type MockActivities } from './harness';

const t = useWorkflowTestEnv();

const TRAINED = {
  trainingKey: 'k',
  uri: 's3://recsys/training/m/k/',
  modelUri: 's3://recsys/training/m/k/model.pt',
  epochs: 2,
  finalLoss: 1.5,
  samplesPerSec: 1000,
  trainSeconds: 3,
  worldSize: 2,
  resumedFromEpoch: 0,
  config: {},
  reused: false,
};
const ACCESS = {
  clusterId: 'c',
  target: 'local-cluster',
  nodes: [
    { name: 'node0', rank: 0, host: '10.231.1.10', user: 'root', privateAddress: '10.231.1.10' },
    { name: 'node1', rank: 1, host: '10.231.1.11', user: 'root', privateAddress: '10.231.1.11' },
  ],
  homes: ['/h/node0', '/h/node1'],
  rdzvEndpoint: '10.231.1.10:29500',
};
// Far beyond any time the test server's clock skips to (it jumps to pending timers when nothing else runs).
const ENDS = 8.64e15;
const LEASE = {
  id: 'l',
  name: 'recsys-c',
  status: 'ACTIVE',
  reservationId: 'r',
  endsAt: '2036-12-01 00:00',
  endsAtMs: ENDS,
};

const happy = (): MockActivities => ({
  createLease: () => LEASE,
  awaitLease: () => LEASE,
  applyNodes: () => ACCESS,
  configureNodes: () => ({ changed: { node0: 5, node1: 5 }, seconds: 1 }),
  train: () => TRAINED,
  stopTraining: () => 0,
  destroyNodes: () => true,
  deleteLease: () => undefined,
});

const input = (extra: Partial<ProvisionTrainingInput> = {}): ProvisionTrainingInput => ({
  train: {
    model: 'm',
    dataset: {
      name: 'd',
      version: 'v',
      uri: 's3://recsys/datasets/d/v/',
      manifestUri: 's3://recsys/datasets/d/v/manifest.json',
      counts: { raw: 1, duplicatesDropped: 0, interactions: 1, users: 1, items: 1, train: 1, valid: 0, test: 0 },
      reused: false,
    },
    config: {},
    nprocPerNode: 1,
  },
  cluster: { target: 'local-cluster', nodes: 2, maxLeaseHours: 2 },
  ...extra,
});

async function run(mocks: MockActivities, extra: Partial<ProvisionTrainingInput> = {}) {
  const { taskQueue, calls } = await t.worker(mocks);
  const handle = await t.env().client.workflow.start(provisionTraining, {
    taskQueue,
    workflowId: uniqueId('provision-test'),
    args: [input(extra)],
  });
  return { handle, calls, names: () => calls.map((c) => c.name) };
}

const UNDO = ['stopTraining', 'destroyNodes', 'deleteLease'];

describe('provisionTraining saga (mocked activities, time skipping)', () => {
  test('provisions, trains on the nodes, then releases them in reverse order, each undo once', async () => {
    const { handle, calls, names } = await run(happy());
    const result = await handle.result();
    expect(names()).toEqual([
      'createLease',
      'awaitLease',
      'applyNodes',
      'configureNodes',
      'train',
      'stopTraining',
      'destroyNodes',
      'deleteLease',
    ]);
    // The training runs on the nodes applyNodes made.
    expect(calls.find((c) => c.name === 'train')?.input.cluster).toEqual(ACCESS);
    expect(result.training).toEqual(TRAINED);
    expect(result.cluster.phase).toBe('released');
    expect(result.cluster.undone).toEqual(['stop training', 'destroy nodes', 'delete lease']);
    expect(result.cluster.steps.map((s) => s.step)).toEqual([
      'lease',
      'await-lease',
      'apply',
      'configure',
      'train',
      'release: stop training',
      'release: destroy',
      'release: delete lease',
    ]);
    expect(result.cluster.nodes).toEqual(['10.231.1.10', '10.231.1.11']);
    // Every step names the same cluster, derived from the workflow id.
    const ids = new Set(calls.filter((c) => c.name !== 'train').map((c) => c.input.clusterId));
    expect(ids.size).toBe(1);
    const d = await handle.describe();
    expect(d.searchAttributes.RecsysClusterPhase).toEqual(['released']);
    expect(d.searchAttributes.RecsysClusterNodes).toEqual([2]);
  });

  // Which undos a failure at each step must run: those registered before it, newest first.
  const cases: [keyof MockActivities, string, string[]][] = [
    ['createLease', 'lease', ['deleteLease']],
    ['awaitLease', 'await-lease', ['deleteLease']],
    ['applyNodes', 'apply', ['destroyNodes', 'deleteLease']],
    ['configureNodes', 'configure', ['destroyNodes', 'deleteLease']],
    ['train', 'train', UNDO],
  ];
  test.each(cases)(
    'a failure in %s runs the undos registered so far, in reverse, once each',
    async (activity, _s, undos) => {
      const { handle, names } = await run({ ...happy(), [activity]: () => Promise.reject(fatal(`${activity} broke`)) });
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const after = names().slice(names().indexOf(activity) + 1);
      expect(after).toEqual(undos);
      expect((await handle.query(clusterStateQuery)).phase).toBe('failed');
    },
  );

  test.each(cases)('a fault injected after %s (step %s) reaches that step only', async (activity, step, undos) => {
    const { handle, calls } = await run(
      {
        ...happy(),
        // The real activities do their work, then fail when failAfter is set; the mocks do the same.
        [activity]: (i: Record<string, unknown>) =>
          i.failAfter
            ? Promise.reject(fatal('injected', 'InjectedFault'))
            : (happy() as Record<string, (i: Record<string, unknown>) => unknown>)[activity]!(i),
      },
      { injectFault: step as ProvisionTrainingInput['injectFault'] },
    );
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(calls.filter((c) => c.input.failAfter).map((c) => c.name)).toEqual(activity === 'train' ? [] : [activity]);
    const names = calls.map((c) => c.name);
    expect(names.slice(names.indexOf(activity) + 1)).toEqual(undos);
  });

  test('a cancel during training stops it and still releases everything, in reverse order', async () => {
    const training = blockingActivity(TRAINED);
    const { handle, names } = await run({ ...happy(), train: training.mock });
    await training.started;
    await handle.cancel();
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(training.cancelled()).toBe(true);
    expect(names().slice(names().indexOf('train') + 1)).toEqual(UNDO);
    const state = await handle.query(clusterStateQuery);
    expect(state.undone).toEqual(['stop training', 'destroy nodes', 'delete lease']);
  });

  test('a lease that ends too soon for training releases everything before it starts', async () => {
    const { handle, names } = await run({
      ...happy(),
      awaitLease: () => ({ ...LEASE, endsAtMs: Date.now() + 60_000 }),
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/no time left to train/);
    expect(names()).not.toContain('train');
    expect(names().slice(names().indexOf('configureNodes') + 1)).toEqual(['destroyNodes', 'deleteLease']);
  });

  test('an undo that fails does not stop the others, and the run says what was not released', async () => {
    const { handle, names } = await run({
      ...happy(),
      destroyNodes: () => Promise.reject(fatal('tofu destroy: provider unreachable')),
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/releasing the cluster failed: destroy nodes/);
    // deleteLease still ran after destroyNodes failed (its retries exhausted).
    expect(names().filter((n) => n === 'deleteLease')).toHaveLength(1);
    expect(names().at(-1)).toBe('deleteLease');
  });
});
