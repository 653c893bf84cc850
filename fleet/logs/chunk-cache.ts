/**
 * A local cache of serving log chunks, so DuckDB reads local files (the npm build has no httpfs, and nothing may
 * reach out for an extension) and a chunk is downloaded once, however many drift windows read its hour.
 *
 *   <cacheDir>/serving-log-cache/<YYYY-MM-DDTHH>/<hash of the URI>.<ETag>.jsonl         the chunk, byte for byte
 *   <cacheDir>/serving-log-cache/<YYYY-MM-DDTHH>/<hash of the URI>.<ETag>.index.json    { records, min/max time_ms }
 *
 * - Keyed by object and ETag: a chunk whose ETag changed is another file, downloaded again; the stale version of the
 *   key is deleted once the new one is in place.
 * - A file appears under its final name whole or not at all (unique temporary name, then rename), so processes that
 *   fetch one chunk at once only ever replace it with the same bytes.
 * - The sidecar index lets a window skip the chunks of its hour that hold no record of it without reading them again
 *   (windows of a few seconds read the same hour's chunks many times).
 * - Bounded: the directories of hours older than `maxAgeMs` go at each fetch (except hours that fetch needs).
 *   Drift baselines are built from window summaries, never from raw chunks, so old hours are not needed again.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { ObjectStore } from '../../lib/object-store';
import { HOUR_MS, type LogChunkRef } from './chunks';
import { duckdbOptions, sqlFileList } from './duckdb';

export const CHUNK_CACHE_DIR = 'serving-log-cache';
/** Two days: a window and its grace are at most a few hours old when summarised; a backfill re-downloads. */
export const DEFAULT_MAX_AGE_MS = 48 * HOUR_MS;
const DEFAULT_CONCURRENCY = 8;

export interface ChunkIndex {
  /** Lines with a numeric time_ms (what any window can count). */
  records: number;
  /** null when the chunk holds no record. */
  minTimeMs: number | null;
  maxTimeMs: number | null;
}

export interface CachedChunk {
  chunk: LogChunkRef;
  /** The local copy. */
  file: string;
  index: ChunkIndex;
  /** True when this fetch downloaded it (false: reused from the cache). */
  downloaded: boolean;
}

export interface ChunkCacheOptions {
  store: ObjectStore;
  cacheDir: string;
  /** Hours older than this are evicted (default DEFAULT_MAX_AGE_MS). */
  maxAgeMs?: number;
  /** Downloads at once (default 8: chunks are small and the store is latency-bound). */
  concurrency?: number;
  now?: () => number;
}

export interface FetchProgress {
  done: number;
  total: number;
  downloaded: number;
  bytes: number;
}

/** Whether a chunk may hold records of [fromMs, toMs). */
export function mayOverlap(index: ChunkIndex, fromMs: number, toMs: number): boolean {
  return index.records > 0 && index.minTimeMs! < toMs && index.maxTimeMs! >= fromMs;
}

const hourDirName = (hourStartMs: number) => new Date(hourStartMs).toISOString().slice(0, 13);
const HOUR_DIR = /^(\d{4}-\d{2}-\d{2})T(\d{2})$/;
/** Our file names: <24 hex of the URI's hash>.<ETag or its hash>.jsonl / .index.json */
const CACHED_FILE = /^([0-9a-f]{24})\.([A-Za-z0-9-]{1,100})\.(jsonl|index\.json)$/;

/** A file-name-safe stand-in for an ETag (usually hex, `-N` for multipart); '' (store gave none) → the size. */
function etagIdent(chunk: LogChunkRef): string {
  if (chunk.etag === '') return `size-${chunk.size}`;
  return /^[A-Za-z0-9-]{1,100}$/.test(chunk.etag)
    ? chunk.etag
    : createHash('sha256').update(chunk.etag).digest('hex').slice(0, 32);
}

const exists = (file: string) =>
  fs.access(file).then(
    () => true,
    () => false,
  );

async function writeAtomic(file: string, body: string): Promise<void> {
  const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}.partial`;
  try {
    await fs.writeFile(tmp, body);
    await fs.rename(tmp, file);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

function parseIndex(raw: string): ChunkIndex | undefined {
  try {
    const v = JSON.parse(raw) as Partial<ChunkIndex>;
    const okTime = (t: unknown) => t === null || typeof t === 'number';
    if (typeof v.records === 'number' && okTime(v.minTimeMs) && okTime(v.maxTimeMs))
      return { records: v.records, minTimeMs: v.minTimeMs ?? null, maxTimeMs: v.maxTimeMs ?? null };
  } catch {
    // A torn or foreign sidecar is recomputed.
  }
  return undefined;
}

/** Min/max time_ms and record count of local chunk files, in one DuckDB scan. */
export async function indexFiles(files: readonly string[]): Promise<Map<string, ChunkIndex>> {
  const out = new Map<string, ChunkIndex>(files.map((f) => [f, { records: 0, minTimeMs: null, maxTimeMs: null }]));
  if (files.length === 0) return out;
  const instance = await DuckDBInstance.create(':memory:', duckdbOptions());
  const conn = await instance.connect();
  try {
    const rows = (
      await conn.runAndReadAll(
        `SELECT filename, CAST(count(*) AS DOUBLE), min(time_ms), max(time_ms)
         FROM read_json(${sqlFileList(files)}, format = 'newline_delimited', ignore_errors = true,
                        filename = true, columns = {time_ms: 'DOUBLE'})
         WHERE time_ms IS NOT NULL GROUP BY filename`,
      )
    ).getRows();
    for (const [file, n, min, max] of rows)
      out.set(String(file), { records: Number(n), minTimeMs: Number(min), maxTimeMs: Number(max) });
    return out;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

export class ChunkCache {
  readonly root: string;
  private readonly store: ObjectStore;
  private readonly maxAgeMs: number;
  private readonly concurrency: number;
  private readonly now: () => number;

  constructor(opts: ChunkCacheOptions) {
    this.root = path.join(opts.cacheDir, CHUNK_CACHE_DIR);
    this.store = opts.store;
    this.maxAgeMs = opts.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    if (!(this.maxAgeMs > 0)) throw new Error(`chunk cache: maxAgeMs must be positive, got ${this.maxAgeMs}`);
    this.concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    if (!(Number.isInteger(this.concurrency) && this.concurrency > 0))
      throw new Error(`chunk cache: concurrency must be a positive integer, got ${this.concurrency}`);
    this.now = opts.now ?? Date.now;
  }

  /** Where a chunk's local copy lives (its sidecar: `.index.json` instead of `.jsonl`). */
  fileOf(chunk: LogChunkRef): string {
    const keyHash = createHash('sha256').update(chunk.uri).digest('hex').slice(0, 24);
    return path.join(this.root, hourDirName(chunk.parts.hourStartMs), `${keyHash}.${etagIdent(chunk)}.jsonl`);
  }

  /** Local copies of `chunks` with their indexes (in the given order), downloading what the cache lacks. */
  async fetch(chunks: readonly LogChunkRef[], onProgress?: (p: FetchProgress) => void): Promise<CachedChunk[]> {
    const hours = new Set(chunks.map((c) => hourDirName(c.parts.hourStartMs)));
    await this.evict(hours);
    const results: CachedChunk[] = new Array<CachedChunk>(chunks.length);
    const unindexed: number[] = [];
    const progress: FetchProgress = { done: 0, total: chunks.length, downloaded: 0, bytes: 0 };
    let next = 0;
    const worker = async () => {
      while (next < chunks.length) {
        const i = next++;
        const chunk = chunks[i]!;
        const file = this.fileOf(chunk);
        const sidecar = file.replace(/\.jsonl$/, '.index.json');
        let downloaded = false;
        if (!(await exists(file))) {
          await this.download(chunk, file);
          downloaded = true;
          progress.downloaded++;
          progress.bytes += chunk.size;
        }
        const index = downloaded ? undefined : await fs.readFile(sidecar, 'utf8').then(parseIndex, () => undefined);
        results[i] = { chunk, file, index: index ?? { records: 0, minTimeMs: null, maxTimeMs: null }, downloaded };
        if (!index) unindexed.push(i);
        progress.done++;
        onProgress?.({ ...progress });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, chunks.length) }, worker));
    if (unindexed.length > 0) {
      const indexes = await indexFiles(unindexed.map((i) => results[i]!.file));
      for (const i of unindexed) {
        const r = results[i]!;
        r.index = indexes.get(r.file)!;
        await writeAtomic(r.file.replace(/\.jsonl$/, '.index.json'), JSON.stringify(r.index));
      }
    }
    if (progress.downloaded > 0) await this.dropStaleVersions(results.filter((r) => r.downloaded));
    return results;
  }

  private async download(chunk: LogChunkRef, file: string): Promise<void> {
    // downloadFile writes a unique temporary file and renames it: concurrent fetches of one chunk cannot tear it.
    const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}.download`;
    try {
      await this.store.downloadFile(chunk.uri, tmp);
      const { size } = await fs.stat(tmp);
      // The listing's ETag names the file: bytes of another version must not be stored under it.
      if (size !== chunk.size)
        throw new Error(
          `chunk cache: ${chunk.uri} has ${size} bytes but was listed with ${chunk.size} (ETag ${chunk.etag}); ` +
            'it changed while being read, list again',
        );
      await fs.rename(tmp, file);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  /** Deletes other ETag versions of the keys just downloaded (one local copy per key). */
  private async dropStaleVersions(fresh: readonly CachedChunk[]): Promise<void> {
    const byDir = new Map<string, Map<string, string>>(); // dir -> key hash -> current ETag ident
    for (const r of fresh) {
      const m = CACHED_FILE.exec(path.basename(r.file))!;
      const dir = path.dirname(r.file);
      let keys = byDir.get(dir);
      if (!keys) byDir.set(dir, (keys = new Map<string, string>()));
      keys.set(m[1]!, m[2]!);
    }
    for (const [dir, keys] of byDir)
      for (const name of await fs.readdir(dir)) {
        const m = CACHED_FILE.exec(name);
        const current = m ? keys.get(m[1]!) : undefined;
        if (m && current !== undefined && current !== m[2]) await fs.rm(path.join(dir, name), { force: true });
      }
  }

  /** Removes the directories of hours older than the age bound, except `keep` (hour directory names). */
  async evict(keep: ReadonlySet<string> = new Set()): Promise<number> {
    const entries = await fs.readdir(this.root).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const oldest = this.now() - this.maxAgeMs;
    let removed = 0;
    for (const name of entries) {
      const m = HOUR_DIR.exec(name);
      if (!m || keep.has(name)) continue;
      const hourStart = Date.parse(`${m[1]}T${m[2]}:00:00Z`);
      if (Number.isNaN(hourStart) || hourStart + HOUR_MS > oldest) continue;
      await fs.rm(path.join(this.root, name), { recursive: true, force: true });
      removed++;
    }
    return removed;
  }
}
