/**
 * Opportunistic micro-batching (what Triton calls dynamic batching, without a delay): a request that arrives while
 * fewer than `maxInFlight` batches are running runs at once, alone; requests that arrive while the runs are busy
 * queue and go together in the next batch (up to `maxBatch`). So an idle server answers with no added latency, and a
 * busy one pays the per-call cost of the model (the native hop, tensor set-up) once per batch instead of per request.
 */
export interface BatchRunner<Req, Res> {
  /** Runs a batch; returns one result per request, in order. A throw fails every request of the batch. */
  (requests: Req[]): Promise<Res[]>;
}

interface Pending<Req, Res> {
  request: Req;
  resolve: (r: Res) => void;
  reject: (e: unknown) => void;
}

export class MicroBatcher<Req, Res> {
  private readonly queue: Pending<Req, Res>[] = [];
  private inFlight = 0;
  /** Batches run and requests served, for metrics and tests. */
  batches = 0;
  served = 0;

  constructor(
    private readonly run: BatchRunner<Req, Res>,
    readonly maxBatch = 64,
    readonly maxInFlight = 1,
  ) {
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new Error(`maxBatch must be >= 1, got ${maxBatch}`);
    if (!(Number.isInteger(maxInFlight) && maxInFlight >= 1))
      throw new Error(`maxInFlight must be >= 1, got ${maxInFlight}`);
  }

  submit(request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      this.batches++;
      this.served += batch.length;
      void this.execute(batch);
    }
  }

  private async execute(batch: Pending<Req, Res>[]): Promise<void> {
    try {
      const results = await this.run(batch.map((p) => p.request));
      if (results.length !== batch.length)
        throw new Error(`batch of ${batch.length} requests returned ${results.length} results`);
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      this.inFlight--;
      this.drain();
    }
  }
}
