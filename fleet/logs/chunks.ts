/**
 * The serving log chunks of one (kind, model, environment) whose UTC hour overlaps a time range, found by listing
 * only the hour prefixes of the range (serving/log-layout.ts), never the whole log: a drift window of a few seconds
 * lists one or two hours however long the log is. Each chunk comes with its ETag and size, what the local chunk cache
 * needs to tell a changed object from one it already has.
 */
import { joinUri, type ObjectStore } from '../../lib/object-store';
import { hourPrefix, parseChunkKey, safeSegment, type ChunkKeyParts } from '../../serving/log-layout';
import type { LogKind } from '../../serving/log-records';

export const HOUR_MS = 3_600_000;

export interface LogChunkRef {
  /** The chunk's key relative to the log prefix (what parseChunkKey reads). */
  key: string;
  /** s3:// URI of the chunk. */
  uri: string;
  /** ETag as listed, without quotes. */
  etag: string;
  size: number;
  parts: ChunkKeyParts;
}

export interface ListChunksOptions {
  /** s3:// prefix of the logs (`s3://<bucket>/serving-logs` by default in serving). */
  prefix: string;
  kind: LogKind;
  model: string;
  /** The env= partition; null reads only the legacy layout (chunks written before environments were recorded). */
  env: string | null;
  /** [fromMs, toMs): every chunk whose hour overlaps it. */
  fromMs: number;
  toMs: number;
  /** Also the legacy chunks of those hours (no env partition). Ignored when env is null. */
  includeLegacy?: boolean;
}

/** Start of every UTC hour that overlaps [fromMs, toMs), oldest first. */
export function hoursOverlapping(fromMs: number, toMs: number): number[] {
  const out: number[] = [];
  for (let h = Math.floor(fromMs / HOUR_MS) * HOUR_MS; h < toMs; h += HOUR_MS) out.push(h);
  return out;
}

function checkRange(fromMs: number, toMs: number): void {
  if (!Number.isFinite(fromMs) || !Number.isFinite(toMs) || toMs < fromMs)
    throw new Error(`log chunks: the range [fromMs, toMs) must be finite and ordered, got [${fromMs}, ${toMs})`);
  // A range of years would list thousands of prefixes: a caller's unit mistake (s for ms), not a window.
  if (toMs - fromMs > 366 * 24 * HOUR_MS)
    throw new Error(`log chunks: the range [${fromMs}, ${toMs}) spans more than a year; is it in milliseconds?`);
}

/** The chunks of (kind, model, env) whose hour overlaps [fromMs, toMs), sorted by key. */
export async function listChunks(store: ObjectStore, opts: ListChunksOptions): Promise<LogChunkRef[]> {
  checkRange(opts.fromMs, opts.toMs);
  const envs: (string | null)[] = opts.env === null ? [null] : opts.includeLegacy ? [opts.env, null] : [opts.env];
  const base = opts.prefix.replace(/\/+$/, '');
  const wantModel = safeSegment(opts.model);
  const wantEnv = (e: string | null) => (e === null ? null : safeSegment(e));
  const byKey = new Map<string, LogChunkRef>();
  for (const hour of hoursOverlapping(opts.fromMs, opts.toMs))
    for (const env of envs) {
      const dir = hourPrefix(opts.kind, opts.model, env, hour);
      const dirUri = joinUri(base, dir);
      for (const obj of await store.listObjects(`${dirUri}/`)) {
        if (!obj.uri.startsWith(`${dirUri}/`)) continue;
        const key = dir + obj.uri.slice(dirUri.length + 1);
        const parts = parseChunkKey(key);
        // Anything else under the prefix (a stray upload, another layout) is not a chunk of ours.
        if (!parts || parts.kind !== opts.kind || parts.model !== wantModel || parts.env !== wantEnv(env)) continue;
        if (parts.hourStartMs !== hour) continue;
        byKey.set(key, { key, uri: obj.uri, etag: obj.etag, size: obj.size, parts });
      }
    }
  return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
