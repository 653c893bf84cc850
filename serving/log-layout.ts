/**
 * Where request and feedback log chunks live in the object store (the contract drift monitors and canary analysis
 * read; also documented in serving/README.md):
 *
 *   <prefix>/<kind>/model=<name>/env=<environment>/date=YYYY-MM-DD/hour=HH/<server-id>-<seq>.jsonl
 *
 * - <prefix> is `s3://<bucket>/serving-logs` by default; <kind> is `recommend` or `feedback`.
 * - model, env, date and hour are Hive-style partitions (DuckDB, Spark and Athena read them as columns); date and hour
 *   are UTC and come from each record's own time, so a chunk holds only records of its hour.
 * - env is the serving environment of the server that wrote the chunk (`staging`, `production`, or `adhoc` for a
 *   `recsys serve` started by hand), so staging load tests never mix with production traffic. Canary and stable
 *   traffic share production's partition and are told apart by each record's model_version.
 * - Chunks written before environments were recorded have no env partition
 *   (`<kind>/model=<name>/date=.../hour=.../...`); parseChunkKey reads them with env `null` (LEGACY_ENV in listings).
 * - <server-id> is unique per server process and <seq> counts the chunks it sealed (zero-padded, so keys sort in
 *   order). A chunk's key is fixed when it is sealed, so a retried upload overwrites the same object: retries are
 *   idempotent and no two chunks share a key.
 * - Each chunk is JSON lines (one record per line, see log-records.ts), content type application/x-ndjson.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { LogKind } from './log-records';

/** The environment of a server started by hand (not by a rollout). */
export const ADHOC_ENV = 'adhoc';

/** The partition directory (relative to the prefix) of a record. */
export function partitionOf(kind: LogKind, model: string, env: string, timeMs: number): string {
  return hourPrefix(kind, model, env, timeMs).slice(0, -1);
}

/**
 * The directory (relative to the prefix, ending in `/`) of the chunks of one UTC hour, `timeMs` being any instant in
 * it; `env` null gives the legacy layout without an env partition.
 */
export function hourPrefix(kind: LogKind, model: string, env: string | null, timeMs: number): string {
  const iso = new Date(timeMs).toISOString(); // YYYY-MM-DDTHH:...Z
  const envPart = env === null ? '' : `env=${safeSegment(env)}/`;
  return `${kind}/model=${safeSegment(model)}/${envPart}date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}/`;
}

export interface ChunkKeyParts {
  kind: LogKind;
  model: string;
  /** null: a chunk of the legacy layout, written before environments were recorded. */
  env: string | null;
  /** Start of the chunk's UTC hour, epoch ms. */
  hourStartMs: number;
  serverId: string;
  seq: number;
}

const KEY =
  /^(recommend|feedback)\/model=([^/]+)\/(?:env=([^/]+)\/)?date=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/(.+)-(\d{8,})\.jsonl$/;

/** The parts of a chunk key (relative to the prefix), either layout; undefined for anything else. */
export function parseChunkKey(key: string): ChunkKeyParts | undefined {
  const m = KEY.exec(key);
  if (!m) return undefined;
  const hourStartMs = Date.parse(`${m[4]}T${m[5]}:00:00Z`);
  if (Number.isNaN(hourStartMs)) return undefined;
  return {
    kind: m[1] as LogKind,
    model: m[2]!,
    env: m[3] ?? null,
    hourStartMs,
    serverId: m[6]!,
    seq: Number(m[7]),
  };
}

export function chunkKey(partition: string, serverId: string, seq: number): string {
  return `${partition}/${serverId}-${String(seq).padStart(8, '0')}.jsonl`;
}

/** Model names are free text in the registry; keep keys to one path segment of safe characters. */
export function safeSegment(s: string): string {
  return s === '' ? '_none' : s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** Host, start time and randomness: unique across processes and restarts, and it sorts by start time per host. */
export function newServerId(): string {
  return `${safeSegment(os.hostname())}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}
