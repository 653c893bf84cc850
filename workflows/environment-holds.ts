/**
 * A rollout's hold on the serving environments: it takes an environment's lease (environment-lease.ts) by starting the
 * lease as its child under the environment's id, and waits while another rollout's lease runs under that id.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  ParentClosePolicy,
  sleep,
  startChild,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { environmentLease, environmentLeaseId, releaseLeaseSignal } from './environment-lease';
import { failureMessage } from './saga';

export type Environment = 'staging' | 'production';

/** A lease outlives any wait for approval (at most 7 days by config) only as a last resort. */
const LEASE_MAX_SECONDS = 8 * 24 * 3600;

export interface HoldEvents {
  /** Another rollout holds it (named when known): the rollout shows that it waits. */
  waiting(env: Environment, holder: string | undefined, leaseId: string): void;
  /** Free after a wait. */
  free(env: Environment, waitedSeconds: number, leaseId: string): void;
}

export class EnvironmentHolds {
  private readonly leases = new Map<Environment, ChildWorkflowHandle<typeof environmentLease>>();

  constructor(
    private readonly holder: string,
    private readonly act: Pick<Activities, 'environmentPort' | 'leaseHolder'>,
    private readonly events: HoldEvents,
  ) {}

  /** Takes the environment's lease, re-trying every `retrySeconds`; EnvironmentBusy after `maxWaitSeconds`. */
  async hold(env: Environment, wait: { retrySeconds: number; maxWaitSeconds: number }): Promise<void> {
    const { port } = await this.act.environmentPort({ env });
    const leaseId = environmentLeaseId(env, port);
    let waited = 0;
    let holder: string | undefined;
    for (;;) {
      try {
        // Started outside the rollout's cancellation scope: an abort must not end the lease before the undos ran.
        const lease = await CancellationScope.nonCancellable(() =>
          startChild(environmentLease, {
            workflowId: leaseId,
            args: [{ env, holder: this.holder, maxSeconds: LEASE_MAX_SECONDS }],
            // The lease ends with its holder, however the holder ends: it cannot leak.
            parentClosePolicy: ParentClosePolicy.TERMINATE,
            staticSummary: `${env} held by ${this.holder}`,
          }),
        );
        this.leases.set(env, lease);
        if (waited > 0) this.events.free(env, waited, leaseId);
        return;
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
      if (waited >= wait.maxWaitSeconds)
        throw ApplicationFailure.nonRetryable(
          `${env} is held by ${holder ?? 'another rollout'} (lease ${leaseId}) and was not free within ` +
            `${wait.maxWaitSeconds} s (config environments.maxWaitSeconds)`,
          'EnvironmentBusy',
        );
      const now = await this.act.leaseHolder({ leaseId });
      if (waited === 0 || now !== holder) {
        holder = now;
        this.events.waiting(env, holder, leaseId);
      }
      await sleep(wait.retrySeconds * 1000);
      waited += wait.retrySeconds;
    }
  }

  /** Releases a held environment and waits until the lease has ended (idempotent). */
  async release(env: Environment): Promise<void> {
    const lease = this.leases.get(env);
    if (!lease) return;
    try {
      await lease.signal(releaseLeaseSignal);
      await lease.result();
    } catch (err) {
      if (isCancellation(err)) throw err;
      // The lease ended on its own (expired, or terminated by hand): the environment is free either way.
      log.warn(`lease of ${env} had already ended`, { error: failureMessage(err) });
    }
    this.leases.delete(env);
  }
}
