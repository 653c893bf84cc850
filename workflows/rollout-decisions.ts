/**
 * Human decisions on a rollout, as Temporal updates carrying who and why: `approve` and `reject` while it waits for
 * one (approval, or too little canary traffic), `abort` at any time before it ends. Validators refuse a decision that
 * does not fit the phase, so a refused one never reaches the history.
 */
import { condition, setHandler } from '@temporalio/workflow';
import { abortUpdate, approveUpdate, rejectUpdate, type Decision, type RolloutState } from './rollout-api';

export interface Decisions {
  /** Waits for approve or reject; false when none came in time. */
  awaitVerdict(timeoutMs: number): Promise<boolean>;
  /** The abort request, once one was made. */
  readonly abort: Decision | undefined;
}

function checkDecision(d: Decision): void {
  if (!d?.by?.trim()) throw new Error("a decision needs 'by' (who decides)");
  if (!d.reason?.trim()) throw new Error("a decision needs 'reason' (why)");
}

const awaitingHuman = (s: RolloutState) => s.phase === 'awaiting-approval' || s.phase === 'awaiting-traffic-decision';

/** Installs the handlers; `note` records what happened, `onAbort` stops the rollout's main scope. */
export function acceptDecisions(state: RolloutState, note: (what: string) => void, onAbort: () => void): Decisions {
  let abort: Decision | undefined;
  for (const [update, verdict] of [
    [approveUpdate, 'approve'],
    [rejectUpdate, 'reject'],
  ] as const) {
    setHandler(
      update,
      (d: Decision) => {
        state.decision = { ...d, verdict, at: new Date().toISOString() };
        note(`${verdict === 'approve' ? 'approved' : 'rejected'} by ${d.by}: ${d.reason}`);
        return state;
      },
      {
        validator: (d: Decision) => {
          checkDecision(d);
          if (!awaitingHuman(state))
            throw new Error(
              `the rollout is in phase '${state.phase}', not waiting for a decision; nothing to ${verdict}`,
            );
          if (state.decision) throw new Error(`already ${state.decision.verdict}d by ${state.decision.by}`);
        },
      },
    );
  }
  setHandler(
    abortUpdate,
    (d: Decision) => {
      abort = d;
      note(`abort requested by ${d.by}: ${d.reason}`);
      onAbort();
      return state;
    },
    {
      validator: (d: Decision) => {
        checkDecision(d);
        if (state.outcome || state.phase === 'rolling-back' || state.phase === 'promoted')
          throw new Error(`the rollout is already ${state.phase}`);
        // Promotion moves the alias and all traffic as one step; it is not interrupted half-way.
        if (state.phase === 'promoting')
          throw new Error(
            `the rollout is promoting v${state.version}; it cannot be aborted now. ` +
              `To go back, roll out the previous version once it is done`,
          );
      },
    },
  );
  return {
    awaitVerdict: (timeoutMs) => condition(() => state.decision !== undefined, timeoutMs),
    get abort() {
      return abort;
    },
  };
}
