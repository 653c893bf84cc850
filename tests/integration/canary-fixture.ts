/**
 * A rollout driven to its approval phase under production traffic, for tests that check a kind of model goes through
 * the same rollout as any other (a cascade, a time-aware graph): the canary analysis is loose on quality on purpose.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { pendingActivities } from '../../cli/temporal';
import { START_TIMEOUT_MS } from '../../fleet/environment';
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
  // Up to the canary step the rollout deploys staging and production; a replica start that hangs is given up after
  // START_TIMEOUT_MS and the deploy retried, so the wait outlasts one such retry. A wait past a minute prints
  // where the rollout stands, so a slow pass is visible in the log, not only a failure.
  const until = async (what: string, done: (s: RolloutState) => boolean, timeoutMs = 120_000) => {
    const slow = setTimeout(
      () => void diagnosis(handle).then((d) => console.warn(`still waiting for ${what} after 60 s:\n${d}`)),
      60_000,
    );
    try {
      return await waitFor(
        what,
        async () => {
          const s = await handle.query(rolloutStateQuery);
          if (s.outcome) throw new Error(`rollout ended before ${what}: ${s.outcome} ${s.reason}`);
          return done(s) ? s : undefined;
        },
        timeoutMs,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await diagnosis(handle)}`);
    } finally {
      clearTimeout(slow);
    }
  };
  await until('the canary step', (s) => s.phase === 'canary' && !!s.weights[version], 3 * START_TIMEOUT_MS);
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

/** Where a rollout stands, for a test that gave up on it: its phase, its last events and its running activities. */
async function diagnosis(handle: WorkflowHandle): Promise<string> {
  try {
    const s = await handle.query(rolloutStateQuery);
    const lines = [`phase ${s.phase}, weights ${JSON.stringify(s.weights)}`];
    for (const e of s.events.slice(-8)) lines.push(`  ${e.at} ${e.what}`);
    for (const a of await pendingActivities(handle))
      lines.push(
        `  running ${a.type} (attempt ${a.attempt}): ${JSON.stringify(a.heartbeat ?? null)}` +
          (a.lastFailure ? `; the last attempt failed: ${a.lastFailure}` : ''),
      );
    return lines.join('\n');
  } catch (err) {
    return `(no diagnosis: ${(err as Error).message})`;
  }
}
