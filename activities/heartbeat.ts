/** Heartbeats that also work when an activity function is called outside a worker (benchmarks, scripts). */
import { CancelledFailure, Context } from '@temporalio/activity';

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

export function throwIfCancelled(): void {
  const ctx = currentContext();
  if (ctx?.cancellationSignal.aborted) throw new CancelledFailure('activity cancelled');
}

/** Details of the previous attempt's last heartbeat, used to resume. */
export function lastHeartbeatDetails<T>(): T | undefined {
  return currentContext()?.info.heartbeatDetails as T | undefined;
}
