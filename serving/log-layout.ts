/**
 * Where request and feedback log chunks live in the object store (the contract drift monitors and canary analysis
 * read; also documented in serving/README.md):
 *
 *   <prefix>/<kind>/model=<name>/date=YYYY-MM-DD/hour=HH/<server-id>-<seq>.jsonl
 *
 * - <prefix> is `s3://<bucket>/serving-logs` by default; <kind> is `recommend` or `feedback`.
 * - model, date and hour are Hive-style partitions (DuckDB, Spark and Athena read them as columns); date and hour are
 *   UTC and come from each record's own time, so a chunk holds only records of its hour.
 * - <server-id> is unique per server process and <seq> counts the chunks it sealed (zero-padded, so keys sort in
 *   order). A chunk's key is fixed when it is sealed, so a retried upload overwrites the same object: retries are
 *   idempotent and no two chunks share a key.
 * - Each chunk is JSON lines (one record per line, see log-records.ts), content type application/x-ndjson.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { LogKind } from './log-records';

/** The partition directory (relative to the prefix) of a record. */
export function partitionOf(kind: LogKind, model: string, timeMs: number): string {
  const iso = new Date(timeMs).toISOString(); // YYYY-MM-DDTHH:...Z
  return `${kind}/model=${safeSegment(model)}/date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}`;
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
