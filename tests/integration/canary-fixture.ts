/**
 * A rollout driven to its approval phase under production traffic, for tests that check a kind of model goes through
 * the same rollout as any other (a cascade, a time-aware graph): the canary analysis is loose on quality on purpose.
 */
import type { Client } from '@temporalio/client';
import { replicaSlots } from '../../fleet/environments';
import { simulate } from '../../fleet/simulate/run';
import { expandPopulation, type SimUser } from '../../fleet/simulate/workload';
import type { RolloutConfigInput } from '../../lib/rollout/config';
import { rolloutStateQuery, rolloutWorkflowId, type RolloutState } from '../../workflows/rollout-api';
import { rollout } from '../../workflows/rollout';
import { waitFor } from './training-fixture';

/** One 50% canary step; quality may drop 90% (these tests are about plumbing, not about which model is better). */
export const PLUMBING_ROLLOUT: RolloutConfigInput = {
  staging: { replicas: 1, loadTest: { qps: 50, seconds: 2 }, maxErrorRate: 0.01, maxP99Ms: 1000 },
  production: { replicas: 2 },
  canary: {
    steps: [{ weight: 50, bakeSeconds: 8 }],
    analysis: {
      minRequests: 40,
      minFeedback: 40,
      minClicks: 5,
      minCtrDrop: 0.9,
      maxP99Ratio: 10,
      p99SlackMs: 100,
      maxP99Ms: 1000,
      retrySeconds: 3,
      maxWaitSeconds: 9,
    },
  },
  approval: { timeoutSeconds: 300 },
};

/** Starts the rollout, replays `users` on production from the canary step on, and returns at awaiting-approval. */
export async function rolloutToApproval(
  client: Client,
  taskQueue: string,
  target: { model: string; version: string },
  users: readonly SimUser[],
) {
  const { model, version } = target;
  const handle = await client.workflow.start(rollout, {
    taskQueue,
    workflowId: rolloutWorkflowId(model, version),
    args: [{ model, version, config: PLUMBING_ROLLOUT, startedBy: 'jest' }],
  });
  const until = (what: string, done: (s: RolloutState) => boolean) =>
    waitFor(what, async () => {
      const s = await handle.query(rolloutStateQuery);
      if (s.outcome) throw new Error(`rollout ended before ${what}: ${s.outcome} ${s.reason}`);
      return done(s) ? s : undefined;
    });
  await until('the canary step', (s) => s.phase === 'canary' && !!s.weights[version]);
  const abort = new AbortController();
  const load = simulate({
    addresses: replicaSlots('production')
      .slice(0, 2)
      .map((r) => r.address),
    users: expandPopulation(users, 2000),
    qps: 150,
    seconds: 120,
    concurrency: 32,
    timeoutMs: 2000,
    signal: abort.signal,
  });
  try {
    return { handle, waiting: await until('approval', (s) => s.phase === 'awaiting-approval') };
  } finally {
    abort.abort();
    await load;
  }
}
