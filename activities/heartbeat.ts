/** Heartbeats that also work when an activity function is called outside a worker (benchmarks, scripts). */
import { CancelledFailure, Context } from '@temporalio/activity';
import { withTicker } from '../lib/time';

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

export function activityHeartbeat(details?: unknown): void {
  currentContext()?.heartbeat(details);
}

/** The activity's cancellation signal (none outside an activity). */
export function cancellationSignal(): AbortSignal | undefined {
  return currentContext()?.cancellationSignal;
}

export function throwIfCancelled(): void {
  const ctx = currentContext();
  if (ctx?.cancellationSignal.aborted) throw new CancelledFailure('activity cancelled');
}

/** Details of the previous attempt's last heartbeat, used to resume. */
export function lastHeartbeatDetails<T>(): T | undefined {
  return currentContext()?.info.heartbeatDetails as T | undefined;
}

/**
 * Runs `work` while heartbeating every `everyMs` with the latest detail, so a step that is quiet for a while (a
 * download, a model load) still shows it is alive and can be cancelled.
 */
export async function heartbeating<T>(detail: () => unknown, work: () => Promise<T>, everyMs = 2000): Promise<T> {
  activityHeartbeat(detail());
  return withTicker(everyMs, () => activityHeartbeat(detail()), work);
}
