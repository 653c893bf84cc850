/**
 * A saga: every step that changes the world registers its undo before or as it runs; compensation runs the undos
 * in reverse, in a non-cancellable scope (a cancelled workflow must still put things back), and keeps going when one
 * fails (the remaining undos are independent; the failure is reported for a human).
 */
import { ActivityFailure, CancellationScope } from '@temporalio/workflow';

export interface Compensation {
  what: string;
  run: () => Promise<unknown>;
}

export class Saga {
  private readonly undos: Compensation[] = [];

  /** Registers the undo of a change. */
  add(what: string, run: () => Promise<unknown>): void {
    this.undos.push({ what, run });
  }

  /** Drops the most recent undo (its change was reverted by the step itself). */
  pop(): void {
    this.undos.pop();
  }

  /** Drops every undo: the changes are now the outcome. */
  clear(): void {
    this.undos.length = 0;
  }

  get pending(): readonly string[] {
    return this.undos.map((u) => u.what);
  }

  /**
   * Runs the undos in reverse order, each once; reports each outcome. Returns the ones that failed. `after` runs in
   * the same non-cancellable scope once the undos are done.
   */
  async compensate(
    report: (outcome: { what: string; error?: string }) => void,
    after?: () => Promise<unknown>,
  ): Promise<string[]> {
    const failed: string[] = [];
    await CancellationScope.nonCancellable(async () => {
      while (this.undos.length > 0) {
        const u = this.undos.pop()!;
        try {
          await u.run();
          report({ what: u.what });
        } catch (err) {
          failed.push(u.what);
          report({ what: u.what, error: failureMessage(err) });
        }
      }
      await after?.();
    });
    return failed;
  }
}

/** The message of a failure, unwrapping an activity failure to its cause. */
export function failureMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}
