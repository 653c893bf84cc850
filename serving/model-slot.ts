/**
 * The model version that serves, and the only place that changes it. A new version is loaded and checked completely
 * while the current one keeps serving, then swapped in with one assignment (requests read `active` once, so each is
 * served entirely by one version); the old version is released after its last in-flight request. A failed load
 * changes nothing but `lastError`.
 *
 * One active version for now; the traffic policy over several loaded versions will build on this (issue 5, part 3).
 */
import type { LoadedModel } from './loaded-model';
import { formatModelRef, type ModelRef } from './model-ref';
import { messageOf } from './errors';
import type { ModelLoader } from './model-loader';

export interface LoadOutcome {
  model: LoadedModel;
  /** False when the requested version was already serving (loading is idempotent). */
  swapped: boolean;
  /** `models:/name/version` of the version it replaced. */
  previous?: string;
}

export class ModelSlot {
  private current: LoadedModel | undefined;
  private readonly listeners: ((active: LoadedModel | undefined) => void)[] = [];
  /** Loads run one at a time, so two of them never race to swap. */
  private queue: Promise<unknown> = Promise.resolve();
  lastError: { at: Date; model: string; message: string } | undefined;

  constructor(private readonly loader: ModelLoader) {}

  /** The serving version, or undefined before the first successful load. */
  get active(): LoadedModel | undefined {
    return this.current;
  }

  /** Called after every change of the active version (health status, later metrics and logs). */
  onChange(listener: (active: LoadedModel | undefined) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Resolves `ref`, loads and checks that version, and puts it in service. Rejects with the reason when anything
   * fails, in which case the version that was serving still is.
   */
  load(ref: ModelRef): Promise<LoadOutcome> {
    const run = this.queue.then(async () => {
      try {
        const version = await this.loader.resolve(ref);
        const cur = this.current?.version;
        if (cur && cur.name === version.name && cur.version === version.version)
          return { model: this.current!, swapped: false };
        return this.swap(await this.loader.load(version));
      } catch (err) {
        this.lastError = { at: new Date(), model: formatModelRef(ref), message: messageOf(err) };
        throw err;
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private swap(next: LoadedModel): LoadOutcome {
    const previous = this.current;
    this.current = next;
    this.lastError = undefined;
    for (const l of this.listeners) l(next);
    if (previous) void previous.retire();
    return { model: next, swapped: true, previous: previous?.label };
  }

  /** Takes the active version out of service and frees it once its requests are done. */
  async close(): Promise<void> {
    await this.queue;
    const previous = this.current;
    this.current = undefined;
    for (const l of this.listeners) l(undefined);
    await previous?.retire();
  }
}
