/**
 * provisionTraining: a saga that rents nodes for one training and always gives them back. Lease (idempotent by name)
 * → wait until active → tofu apply → ansible converge → torchrun on every node (the train activity, checkpointing to
 * the object store and resuming as on one machine) → release. Each step registers its undo before it runs (a step
 * that fails half-way is undone too), and the undos run in reverse, once each, in a non-cancellable scope: after
 * success, failure, a timeout of the lease's length or a cancel. So no node outlives its training (skypilot#468), and
 * what a crashed worker leaves is found by the sweeper (clusterSweeper).
 *
 * The Web UI shows the phase, the node count and the cost clock (node-hours) as search attributes, and a summary in
 * the workflow's current details; `clusterState` answers the same as a query.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ProvisionStep, ProvisionStepInput, TrainResult } from '../activities/contracts';
import { clusterIdOf } from '../lib/cluster-id';
import { RecsysClusterNodes, RecsysClusterPhase, RecsysNodeHours } from '../lib/search-attributes';
import { provisionOptions, releaseOptions, trainOptions } from './activity-options';
import {
  clusterStateQuery,
  type ClusterPhase,
  type ClusterState,
  type ProvisionTrainingInput,
  type ProvisionTrainingResult,
} from './provision-api';
import { Saga } from './saga';

const { createLease, awaitLease, applyNodes, configureNodes } = proxyActivities<Activities>(provisionOptions);
const { stopTraining, destroyNodes, deleteLease } = proxyActivities<Activities>(releaseOptions);
const { train } = proxyActivities<Activities>(trainOptions);

// Each tick is a timer and a workflow task in the history: every 10 minutes keeps a week-long lease far from the
// history limit, and the query computes node-hours at any moment.
const CLOCK_EVERY = '10 minutes';
/** Time kept at the end of a lease to fetch the model and release the nodes before the lease takes them. */
const RELEASE_MARGIN_MS = 15 * 60_000;

export async function provisionTraining(input: ProvisionTrainingInput): Promise<ProvisionTrainingResult> {
  const info = workflowInfo();
  const clusterId = clusterIdOf(info.workflowId);
  const state: ClusterState = {
    clusterId,
    target: input.cluster.target,
    phase: 'leasing',
    nodes: [],
    nodeHours: 0,
    steps: [],
    undone: [],
    undoFailed: [],
  };
  let nodesSince: number | undefined;
  const nodeHoursNow = () =>
    nodesSince === undefined
      ? state.nodeHours
      : Math.round(((input.cluster.nodes * (Date.now() - nodesSince)) / 3_600_000) * 1e4) / 1e4;
  setHandler(clusterStateQuery, () => ({ ...state, nodeHours: nodeHoursNow() }));

  const show = () => {
    state.nodeHours = nodeHoursNow();
    upsertSearchAttributes([
      { key: RecsysClusterPhase, value: state.phase },
      { key: RecsysClusterNodes, value: input.cluster.nodes },
      { key: RecsysNodeHours, value: state.nodeHours },
    ]);
    const steps = state.steps.map((s) => `${s.step} ${s.seconds.toFixed(1)} s`).join(', ');
    setCurrentDetails(
      [
        `**${input.cluster.target}** cluster \`${clusterId}\`: ${input.cluster.nodes} node(s), **${state.phase}**`,
        `node-hours: ${state.nodeHours.toFixed(4)}` + (state.nodes.length ? ` (nodes ${state.nodes.join(', ')})` : ''),
        steps && `steps: ${steps}`,
        state.undone.length ? `released: ${state.undone.join(' → ')}` : '',
        state.undoFailed.length ? `**not released: ${state.undoFailed.join(', ')}** (the sweeper retries)` : '',
      ]
        .filter(Boolean)
        .join('\n\n'),
    );
  };
  const phase = (p: ClusterPhase) => {
    state.phase = p;
    show();
  };
  const timed = async <T>(step: ProvisionStep | `release: ${string}`, run: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await run();
    } finally {
      state.steps.push({ step, seconds: (Date.now() - started) / 1000 });
    }
  };
  const step = (s: ProvisionStep): ProvisionStepInput => ({
    clusterId,
    workflowId: info.workflowId,
    cluster: input.cluster,
    ...(input.injectFault === s ? { failAfter: true } : {}),
  });
  const base: ProvisionStepInput = { clusterId, workflowId: info.workflowId, cluster: input.cluster };

  const saga = new Saga();
  const release = async () => {
    phase('releasing');
    const failed = await saga.compensate((o) => {
      if (o.error) state.undoFailed.push(`${o.what}: ${o.error}`);
      else state.undone.push(o.what);
    });
    show();
    nodesSince = undefined; // the clock stops with the nodes
    return failed;
  };

  let training: TrainResult;
  let run: Promise<TrainResult> | undefined;
  try {
    phase('leasing');
    // Registered first, so it runs last: the lease is given back after the nodes on it are gone.
    saga.add('delete lease', () => timed('release: delete lease', () => deleteLease(base)));
    const lease = await timed('lease', () => createLease(step('lease')));
    phase('waiting-for-lease');
    const active = await timed('await-lease', () => awaitLease({ ...step('await-lease'), leaseId: lease.id }));

    phase('applying');
    saga.add('destroy nodes', () => timed('release: destroy', () => destroyNodes(base)));
    nodesSince = Date.now();
    const access = await timed('apply', () => applyNodes({ ...step('apply'), lease: active }));
    state.nodes = access.nodes.map((n) => n.privateAddress);

    phase('configuring');
    await timed('configure', () => configureNodes({ ...step('configure'), access }));

    // The lease ends when it ends, whatever happens: training stops in time to fetch the model and release the nodes
    // (and never runs longer than the lease was asked for).
    const left = Math.min(active.endsAtMs - Date.now(), input.cluster.maxLeaseHours * 3_600_000) - RELEASE_MARGIN_MS;
    if (!(left > 0))
      throw ApplicationFailure.nonRetryable(
        `the lease ends at ${active.endsAt}: no time left to train (raise maxLeaseHours)`,
        'LeaseTooShort',
      );

    phase('training');
    saga.add('stop training', () => timed('release: stop training', () => stopTraining({ ...base, access })));
    run = timed('train', () => CancellationScope.withTimeout(left, () => train({ ...input.train, cluster: access })));
    let done = false;
    void run.then(
      () => (done = true),
      () => (done = true),
    );
    while (!done) {
      await condition(() => done, CLOCK_EVERY);
      show(); // the cost clock ticks in the Web UI while the nodes train
    }
    training = await run;
    run = undefined;
    if (input.injectFault === 'train')
      throw ApplicationFailure.nonRetryable('fault injected after train', 'InjectedFault');
  } catch (err) {
    // A cancel reaches this catch at once; the training activity stops at its next heartbeat. Release only after it
    // has (WAIT_CANCELLATION_COMPLETED settles the promise then), never under a still-running torchrun.
    const training = run;
    if (training)
      await CancellationScope.nonCancellable(() =>
        training.then(
          () => undefined,
          () => undefined,
        ),
      );
    await release();
    phase('failed');
    throw err;
  }
  const failed = await release();
  phase(failed.length ? 'failed' : 'released');
  if (failed.length)
    throw ApplicationFailure.nonRetryable(
      `trained, but releasing the cluster failed: ${state.undoFailed.join('; ')}`,
      'ReleaseError',
    );
  return { training, cluster: state };
}
