/**
 * What a model version knows about its dataset, in memory for the hot path: item id <-> 1-based item index (the
 * indices the ONNX graph takes and returns), items by popularity (the fallback), and the most recent interactions of
 * each known user (used when a request sends no history). Built by catalog-loader.ts; plain data here so it can be
 * built by hand in unit tests.
 */

/** Each user's most recent item indices, oldest first, in one flat array (CSR layout: no object per user). */
export class UserHistories {
  constructor(
    private readonly index: Map<string, number>,
    /** offsets[u]..offsets[u + 1] is user u's slice of `items`. */
    private readonly offsets: Int32Array,
    private readonly items: Int32Array,
    /** Epoch ms of each entry of `items` (the time-aware families take them); empty when unknown. */
    private readonly timesMs: Float64Array = new Float64Array(0),
  ) {
    if (offsets.length !== index.size + 1) throw new Error('UserHistories: offsets must have one entry per user + 1');
    if (timesMs.length !== 0 && timesMs.length !== items.length)
      throw new Error('UserHistories: timesMs must have one entry per item (or none)');
  }

  static empty(): UserHistories {
    return new UserHistories(new Map(), new Int32Array(1), new Int32Array(0));
  }

  get size(): number {
    return this.index.size;
  }

  /** The user's item indices (a view, not a copy), or undefined for a user the dataset does not have. */
  of(userId: string): Int32Array | undefined {
    const u = this.index.get(userId);
    return u === undefined ? undefined : this.items.subarray(this.offsets[u], this.offsets[u + 1]);
  }

  /** The epoch ms of `of(userId)`'s items (a view), or undefined for an unknown user or when times are not kept. */
  timesOf(userId: string): Float64Array | undefined {
    const u = this.index.get(userId);
    if (u === undefined || this.timesMs.length === 0) return undefined;
    return this.timesMs.subarray(this.offsets[u], this.offsets[u + 1]);
  }
}

export class Catalog {
  private readonly idx: Map<string, number>;

  constructor(
    /** itemIds[i] is the id of item index i; itemIds[0] is the padding index and never an item. */
    readonly itemIds: readonly string[],
    /** Item indices, most popular first. */
    readonly popular: Int32Array,
    /** popularScore[j] is the share of training interactions of popular[j]. */
    readonly popularScore: Float32Array,
    readonly users: UserHistories = UserHistories.empty(),
  ) {
    if (popular.length !== popularScore.length) throw new Error('Catalog: popular and popularScore differ in length');
    this.idx = new Map();
    for (let i = 1; i < itemIds.length; i++) this.idx.set(itemIds[i]!, i);
  }

  /** Number of items (indices 1..nItems). */
  get nItems(): number {
    return this.itemIds.length - 1;
  }

  /** The item's index, or 0 when the catalogue does not have it. */
  indexOf(itemId: string): number {
    return this.idx.get(itemId) ?? 0;
  }

  /** The item id of an index the graph returned, or undefined when the index is out of range. */
  idOf(index: number): string | undefined {
    return index >= 1 ? this.itemIds[index] : undefined;
  }
}
