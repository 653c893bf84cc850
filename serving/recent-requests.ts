/**
 * Which version served a recent Recommend answer, by its request_id, so that feedback (which names the request_id)
 * counts for the version that produced the recommendation, not for whatever serves the user when the feedback
 * arrives. Bounded: a Map in insertion order used as a ring, the oldest id forgotten when full (~100 bytes an entry,
 * so the default 100,000 entries hold a few minutes of traffic at hundreds of QPS in ~10 MB).
 */
export interface ServedBy {
  model: string;
  version: string;
}

export class RecentRequests {
  private readonly byId = new Map<string, ServedBy>();
  /** Versions are few: one object per version, shared by its entries. */
  private readonly versions = new Map<string, ServedBy>();

  constructor(readonly capacity = 100_000) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new Error(`RecentRequests: capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.byId.size;
  }

  remember(requestId: string, model: string, version: string): void {
    const key = `${model}\0${version}`;
    let served = this.versions.get(key);
    if (!served) this.versions.set(key, (served = { model, version }));
    if (this.byId.size >= this.capacity && !this.byId.has(requestId)) {
      const oldest = this.byId.keys().next().value;
      if (oldest !== undefined) this.byId.delete(oldest);
    }
    this.byId.set(requestId, served);
  }

  /** The version that served `requestId`, if it is recent enough to be remembered. */
  servedBy(requestId: string): ServedBy | undefined {
    return requestId === '' ? undefined : this.byId.get(requestId);
  }
}
