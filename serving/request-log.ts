/**
 * The request and feedback logs of a server: records are appended to a buffer on the request path (an O(1) push, no
 * I/O, nothing awaited), sealed into chunks when the buffer holds `batchRecords` or every `flushIntervalMs`, and
 * uploaded oldest first under the layout in log-layout.ts:
 *
 *   s3://<bucket>/serving-logs/<kind>/model=<name>/date=YYYY-MM-DD/hour=HH/<server-id>-<seq>.jsonl
 *
 * Memory is bounded: at most `maxChunksInMemory` sealed chunks wait in memory; when uploads fail for longer than that
 * lasts, the oldest of them are spilled to a local directory (log-spill.ts) and retried, oldest first, with backoff,
 * once the store answers again. Losing the object store for a while therefore costs disk space, not records.
 * close() seals and ships what is left, and spills to disk whatever it could not ship before its deadline (the next
 * server started on the same spill directory ships it).
 */
import { sealChunks, type LogChunk } from './log-chunks';
import { newServerId } from './log-layout';
import type { LogEntry, LogKind } from './log-records';
import { SpillDir } from './log-spill';
import { messageOf } from './errors';
import { sleep } from '../lib/time';

/** Writes one chunk under its key (relative to the log prefix). Must be safe to repeat with the same key and body. */
export interface ChunkUploader {
  put(key: string, body: string): Promise<void>;
}

/** Counters that the metrics endpoint exposes (metrics.ts implements them). */
export interface LogShippingObserver {
  shipped(kind: LogKind, records: number): void;
  spilled(kind: LogKind): void;
  uploadFailed(): void;
}

export interface RequestLogOptions {
  uploader: ChunkUploader;
  /** Local directory for chunks that could not be uploaded yet. */
  spillDir: string;
  serverId?: string;
  batchRecords?: number;
  flushIntervalMs?: number;
  maxChunksInMemory?: number;
  /** First wait after a failed upload; doubles up to maxRetryDelayMs. */
  minRetryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** An upload that takes longer counts as failed and is retried (a store that hangs must not stall shipping). */
  uploadTimeoutMs?: number;
  observer?: LogShippingObserver;
  /** Where shipping problems are reported (the request path never sees them). */
  onError?: (message: string) => void;
}

export interface RequestLogStats {
  buffered: number;
  chunksInMemory: number;
  chunksSpilled: number;
  recordsShipped: number;
  chunksShipped: number;
}


/** Rejects after `ms` unless `p` settles first; `p` itself may still complete later (uploads are idempotent). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class RequestLog {
  readonly serverId: string;
  private buffer: LogEntry[] = [];
  private sealScheduled = false;
  private readonly memory: LogChunk[] = [];
  private readonly spill: SpillDir;
  private seq = 0;
  private pumping: Promise<void> | undefined;
  private retryAt = 0;
  private retryDelay: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private closed: Promise<RequestLogStats> | undefined;
  /** Set when close() gives up on the store: from then on the spill directory holds what is left. */
  private stopped = false;
  private recordsShipped = 0;
  private chunksShipped = 0;
  private readonly batchRecords: number;
  private readonly maxChunksInMemory: number;
  private readonly minRetryDelayMs: number;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly opts: RequestLogOptions) {
    this.serverId = opts.serverId ?? newServerId();
    this.spill = new SpillDir(opts.spillDir);
    this.batchRecords = opts.batchRecords ?? 1000;
    this.maxChunksInMemory = opts.maxChunksInMemory ?? 16;
    this.minRetryDelayMs = opts.minRetryDelayMs ?? 500;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 30_000;
    this.retryDelay = this.minRetryDelayMs;
  }

  /** Adopts chunks spilled by earlier processes and starts the periodic flush. */
  async start(): Promise<void> {
    await this.spill.adopt();
    const every = this.opts.flushIntervalMs ?? 10_000;
    this.flushTimer = setInterval(() => void this.flush(), every);
    this.flushTimer.unref(); // the log never keeps a process alive by itself
    void this.pump();
  }

  /** The request path: O(1), synchronous, never throws. Call only before close(). */
  append(entry: LogEntry): void {
    this.buffer.push(entry);
    if (this.buffer.length >= this.batchRecords && !this.sealScheduled) {
      // Serialising a batch takes a while; do it after the current response rather than inside it.
      this.sealScheduled = true;
      setImmediate(() => void this.flush());
    }
  }

  /** Seals the buffer and ships what it can now; resolves when this attempt ends (shipped, or waiting to retry). */
  flush(): Promise<void> {
    this.seal();
    return this.pump();
  }

  get stats(): RequestLogStats {
    return {
      buffered: this.buffer.length,
      chunksInMemory: this.memory.length,
      chunksSpilled: this.spill.size,
      recordsShipped: this.recordsShipped,
      chunksShipped: this.chunksShipped,
    };
  }

  /**
   * Stops the timers, ships everything within `graceMs`, and spills what is still unshipped after that to disk, so
   * that nothing appended is lost. Idempotent.
   */
  close(graceMs = 10_000): Promise<RequestLogStats> {
    this.closed ??= (async () => {
      clearInterval(this.flushTimer);
      clearTimeout(this.retryTimer);
      const deadline = Date.now() + graceMs;
      this.seal();
      const remaining = () => Math.max(0, deadline - Date.now());
      while (this.memory.length + this.spill.size > 0 && remaining() > 0) {
        this.retryAt = 0; // shutting down: retry now rather than after the backoff
        // Bounded by the deadline even if an upload hangs; what is left then goes to disk below.
        await withTimeout(this.pump(), remaining(), 'flush on close').catch(() => undefined);
        if (this.memory.length + this.spill.size > 0) await sleep(Math.min(200, remaining()));
      }
      clearTimeout(this.retryTimer);
      this.stopped = true;
      // An upload still in flight keeps its chunk in memory, so the chunk is spilled below as well; if the upload
      // succeeds after all, the next start uploads the same key again, which changes nothing.
      for (const chunk of this.memory.splice(0)) {
        try {
          await this.spill.write(chunk);
          this.opts.observer?.spilled(chunk.kind);
        } catch (err) {
          this.report(`lost ${chunk.records} ${chunk.kind} records (${chunk.key}): cannot spill: ${messageOf(err)}`);
        }
      }
      return this.stats;
    })();
    return this.closed;
  }

  private seal(): void {
    this.sealScheduled = false;
    if (this.buffer.length === 0) return;
    const entries = this.buffer;
    this.buffer = [];
    this.memory.push(...sealChunks(entries, this.serverId, () => this.seq++, Date.now()));
  }

  /** One shipping loop at a time; later calls join the running one. */
  private pump(): Promise<void> {
    this.pumping ??= this.drain()
      .catch((err: unknown) => this.report(`log shipping stopped: ${messageOf(err)}`))
      .finally(() => (this.pumping = undefined));
    return this.pumping;
  }

  private async drain(): Promise<void> {
    while (!this.stopped) {
      await this.spillOverflow();
      if (Date.now() < this.retryAt) return this.scheduleRetry();
      const next = await this.oldest();
      if (!next) return;
      try {
        await withTimeout(
          this.opts.uploader.put(next.chunk.key, next.chunk.body),
          this.opts.uploadTimeoutMs ?? 30_000,
          `upload of ${next.chunk.key}`,
        );
      } catch (err) {
        this.opts.observer?.uploadFailed();
        this.report(`upload of ${next.chunk.key} failed, retrying in ${this.retryDelay} ms: ${messageOf(err)}`);
        this.retryAt = Date.now() + this.retryDelay;
        this.retryDelay = Math.min(this.retryDelay * 2, this.maxRetryDelayMs);
        continue;
      }
      this.retryDelay = this.minRetryDelayMs;
      if (next.spilled !== undefined) await this.spill.remove(next.spilled);
      else this.memory.shift();
      this.recordsShipped += next.chunk.records;
      this.chunksShipped++;
      this.opts.observer?.shipped(next.chunk.kind, next.chunk.records);
    }
  }

  /** Spilled chunks are all older than those in memory (only the oldest in memory are ever spilled). */
  private async oldest(): Promise<{ chunk: LogChunk; spilled?: string } | undefined> {
    const onDisk = await this.spill.oldest();
    if (onDisk) return { chunk: onDisk.chunk, spilled: onDisk.name };
    const inMemory = this.memory[0];
    return inMemory && { chunk: inMemory };
  }

  private async spillOverflow(): Promise<void> {
    while (this.memory.length > this.maxChunksInMemory) {
      const chunk = this.memory[0]!;
      try {
        await this.spill.write(chunk);
      } catch (err) {
        // Keep it in memory: better over the bound for a while than records lost.
        this.report(`cannot spill ${chunk.key}: ${messageOf(err)}`);
        return;
      }
      this.memory.shift();
      this.opts.observer?.spilled(chunk.kind);
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        void this.pump();
      },
      Math.max(0, this.retryAt - Date.now()),
    );
    this.retryTimer.unref();
  }

  private report(message: string): void {
    (this.opts.onError ?? ((m: string) => console.error(`request log: ${m}`)))(message);
  }
}
