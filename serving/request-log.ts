/**
 * The request and feedback logs of a server: records are appended to a buffer on the request path (an O(1) push, no
 * I/O, nothing awaited), sealed into chunks when the buffer holds `batchRecords` or every `flushIntervalMs`, written
 * at once to a local spill directory (log-spill.ts: fsync, then rename) and uploaded from there, oldest first, under
 * the layout in log-layout.ts:
 *
 *   s3://<bucket>/serving-logs/<kind>/model=<name>/env=<environment>/date=YYYY-MM-DD/hour=HH/<server-id>-<seq>.jsonl
 *
 * The environment is the server's (`recsys serve --environment`, `adhoc` by default; the fleet's replicas say
 * `staging` or `production`), so traffic of different environments never shares a chunk or a partition.
 *
 * The spill file goes once the object store has the chunk. So what a SIGKILL (or a crash) can lose is bounded by what
 * was not sealed yet: the records appended since the last seal (at most `flushIntervalMs` of traffic and about
 * `batchRecords` records) plus a chunk whose write was under way. Losing the object store for a while costs disk
 * space, not records or memory: failed uploads are retried with backoff. Only a chunk that cannot be written to disk
 * stays in memory (and is lost on a kill). close() seals, ships what it can within its deadline and leaves the rest on
 * disk, where the next server started on the same spill directory finds and ships it.
 */
import { sealChunks, type LogChunk } from './log-chunks';
import { ADHOC_ENV, newServerId } from './log-layout';
import type { LogEntry, LogKind } from './log-records';
import { SpillDir } from './log-spill';
import { messageOf } from './errors';
import { sleep } from '../lib/time';
import { LOG_SHIP_GRACE_MS } from './shutdown-budget';
import { withTimeout } from '../lib/time';

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

/** Environment names become a key segment (`env=<name>`): lowercase letters, digits and '-', 1 to 32 of them. */
export const ENVIRONMENT_NAME = /^[a-z0-9-]{1,32}$/;

/** Why `name` cannot be an environment name (`what` names the flag or field), or undefined when it can. */
export function environmentNameProblem(what: string, name: string): string | undefined {
  return ENVIRONMENT_NAME.test(name)
    ? undefined
    : `${what} must be 1 to 32 lowercase letters, digits or '-', got ${JSON.stringify(name)}`;
}

export interface RequestLogOptions {
  uploader: ChunkUploader;
  /** The serving environment, the `env=` partition of every chunk (default ADHOC_ENV, 'adhoc'). */
  environment?: string;
  /** Local directory for chunks that could not be uploaded yet. */
  spillDir: string;
  serverId?: string;
  batchRecords?: number;
  flushIntervalMs?: number;
  /** Chunks kept in memory when they cannot be written to disk, before they count as lost in reports. */
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
  /** Appended, not sealed yet. */
  buffered: number;
  /** Sealed, not on disk: being written, or the write failed. */
  chunksInMemory: number;
  /** On disk in the spill directory, not shipped yet. */
  chunksSpilled: number;
  recordsShipped: number;
  chunksShipped: number;
  /** Spill files set aside as not being chunks (`.bad`). */
  badFiles: number;
}

export const DEFAULT_FLUSH_INTERVAL_MS = 2_000;
export const DEFAULT_BATCH_RECORDS = 1_000;
/** How long close() spends shipping by default; what is left after that is already on disk. */
export const DEFAULT_CLOSE_GRACE_MS = LOG_SHIP_GRACE_MS;
/** Local disk writes get this long in close() even when the shipping grace is shorter: they are what keeps records. */
const MIN_CLOSE_WRITE_MS = 2_000;

export class RequestLog {
  readonly serverId: string;
  readonly environment: string;
  private buffer: LogEntry[] = [];
  private sealScheduled = false;
  /** Sealed chunks not written to disk yet, oldest first. */
  private readonly unwritten: LogChunk[] = [];
  /** Chunks whose spill write failed: shipped from memory (lost if the process dies first). */
  private readonly memory: LogChunk[] = [];
  /** The write of `unwritten`, one at a time, in order. */
  private writing: Promise<void> = Promise.resolve();
  private readonly spill: SpillDir;
  private badFiles = 0;
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
    this.environment = opts.environment ?? ADHOC_ENV;
    const problem = environmentNameProblem('environment', this.environment);
    if (problem) throw new Error(`request log: ${problem}`);
    this.spill = new SpillDir(opts.spillDir, (file, reason) => {
      this.badFiles++;
      this.report(`set aside ${file}: not a log chunk (${reason}); shipping the others`);
    });
    this.batchRecords = opts.batchRecords ?? DEFAULT_BATCH_RECORDS;
    this.maxChunksInMemory = opts.maxChunksInMemory ?? 16;
    this.minRetryDelayMs = opts.minRetryDelayMs ?? 500;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 30_000;
    this.retryDelay = this.minRetryDelayMs;
  }

  /** Adopts chunks spilled by earlier processes and starts the periodic flush. */
  async start(): Promise<void> {
    await this.spill.adopt();
    const every = this.opts.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
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

  /**
   * Seals the buffer, waits until it is on disk and ships what it can now; resolves when this attempt ends (shipped,
   * or waiting to retry).
   */
  async flush(): Promise<void> {
    await this.seal();
    return this.pump();
  }

  get stats(): RequestLogStats {
    return {
      buffered: this.buffer.length,
      chunksInMemory: this.unwritten.length + this.memory.length,
      chunksSpilled: this.spill.size,
      recordsShipped: this.recordsShipped,
      chunksShipped: this.chunksShipped,
      badFiles: this.badFiles,
    };
  }

  /**
   * Stops the timers, seals the buffer to disk, ships what it can within `graceMs` and leaves the rest in the spill
   * directory for the next start, so that nothing appended is lost. Idempotent.
   */
  close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<RequestLogStats> {
    this.closed ??= (async () => {
      clearInterval(this.flushTimer);
      clearTimeout(this.retryTimer);
      const deadline = Date.now() + graceMs;
      const remaining = () => Math.max(0, deadline - Date.now());
      await withTimeout(this.seal(), Math.max(remaining(), MIN_CLOSE_WRITE_MS), 'spill writes on close').catch(
        (err: unknown) => this.report(messageOf(err)),
      );
      while (this.memory.length + this.spill.size > 0 && remaining() > 0) {
        this.retryAt = 0; // shutting down: retry now rather than after the backoff
        // Bounded by the deadline even if an upload hangs; what is left then goes to disk below.
        await withTimeout(this.pump(), remaining(), 'flush on close').catch(() => undefined);
        if (this.memory.length + this.spill.size > 0) await sleep(Math.min(200, remaining()));
      }
      clearTimeout(this.retryTimer);
      this.stopped = true;
      // Only chunks whose earlier write failed are here: one more try. An upload still in flight keeps its chunk, so
      // it is written as well; if the upload succeeds after all, the next start uploads the same key again, which
      // changes nothing.
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

  /**
   * Turns the buffer into chunks (synchronously: nothing appended later can get in) and writes them to the spill
   * directory; resolves when every chunk sealed so far has been written (or has failed to be, and waits in memory).
   */
  private seal(): Promise<void> {
    this.sealScheduled = false;
    if (this.buffer.length > 0) {
      const entries = this.buffer;
      this.buffer = [];
      const chunks = sealChunks(
        entries,
        { serverId: this.serverId, env: this.environment },
        () => this.seq++,
        Date.now(),
      );
      this.unwritten.push(...chunks);
      this.writing = this.writing.then(() => this.writeChunks(chunks.length));
    }
    return this.writing;
  }

  /** Writes the oldest `n` unwritten chunks, in order, then lets shipping know. Never rejects. */
  private async writeChunks(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const chunk = this.unwritten[0]!;
      try {
        await this.spill.write(chunk);
        this.opts.observer?.spilled(chunk.kind);
      } catch (err) {
        // Better shipped from memory (and lost on a kill) than dropped now.
        this.memory.push(chunk);
        this.report(`cannot write ${chunk.key} to the spill directory, keeping it in memory: ${messageOf(err)}`);
        if (this.memory.length > this.maxChunksInMemory)
          this.report(`${this.memory.length} chunks wait in memory (bound ${this.maxChunksInMemory}): check the disk`);
      }
      this.unwritten.shift();
    }
    if (!this.closed) void this.pump();
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
      await this.respill();
      if (Date.now() < this.retryAt) return this.scheduleRetry();
      const next = await this.oldest();
      // close() may have given up on shipping while the file was read: the chunk stays on disk for the next start.
      if (!next || this.stopped) return;
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
      else this.memory.splice(this.memory.indexOf(next.chunk), 1);
      this.recordsShipped += next.chunk.records;
      this.chunksShipped++;
      this.opts.observer?.shipped(next.chunk.kind, next.chunk.records);
    }
  }

  /** The oldest chunk waiting, on disk or (when its write failed) in memory. */
  private async oldest(): Promise<{ chunk: LogChunk; spilled?: string } | undefined> {
    const onDisk = await this.spill.oldest();
    const inMemory = this.memory[0];
    if (onDisk && !(inMemory && inMemory.sealedAtMs < onDisk.chunk.sealedAtMs))
      return { chunk: onDisk.chunk, spilled: onDisk.name };
    return inMemory && { chunk: inMemory };
  }

  /** Tries again to put chunks kept in memory on disk (the disk may have come back), oldest first. */
  private async respill(): Promise<void> {
    while (this.memory.length > 0) {
      const chunk = this.memory[0]!;
      try {
        await this.spill.write(chunk);
      } catch {
        return; // reported when the first write failed
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
