/**
 * A model version that passed every check and can serve: its ranker, its catalogue and its lineage. Counts the
 * requests using it, so that when a newer version replaces it the graph is released only after the last of them.
 */
import type { Catalog } from './catalog';
import { ItemMarks } from './item-marks';
import type { ServableVersion } from './model-version';
import type { Ranker } from './onnx-ranker';
import { DEFAULT_LIMITS, type RequestLimits } from './validate';

export class LoadedModel {
  readonly limits: RequestLimits;
  /** Scratch set of excluded items, reused by every request (synchronously, see ItemMarks). */
  readonly excluded: ItemMarks;
  private inFlight = 0;
  private retired = false;
  private onDrained: (() => void) | undefined;
  private disposed: Promise<void> | undefined;

  constructor(
    readonly version: ServableVersion,
    readonly ranker: Ranker,
    readonly catalog: Catalog,
    limits: Partial<Omit<RequestLimits, 'topK'>> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits, topK: ranker.topK };
    this.excluded = new ItemMarks(catalog.nItems);
  }

  /** `models:/name/version`. */
  get label(): string {
    return `models:/${this.version.name}/${this.version.version}`;
  }

  /** Marks a request as using this version; pair with release(). */
  acquire(): void {
    this.inFlight++;
  }

  release(): void {
    this.inFlight--;
    if (this.retired && this.inFlight === 0) this.onDrained?.();
  }

  /** No new requests will come; resolves once the ones in flight are done and the graph is freed. */
  retire(): Promise<void> {
    if (!this.retired) {
      this.retired = true;
      const drained =
        this.inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.onDrained = resolve));
      // A failed release leaks native memory but must not take the server down.
      this.disposed = drained.then(() => this.ranker.dispose()).catch(() => undefined);
    }
    return this.disposed!;
  }
}
