/**
 * Served feedback as training data: the feedback records of (model, env) with time_ms in [fromMs, toMs) and one of
 * the chosen events, as JSON lines in the object store, for the ETL to append to a dataset's sources.
 *
 * Deterministic: the same window over the same chunks gives the same bytes (rows sorted by time_ms, request_id,
 * item_id and then every other field; fixed field order), so a retried export rewrites an identical object and its
 * sha256 can key content addressing downstream. Written to a local temporary file first, then uploaded: the object
 * appears whole or not at all. No rows: nothing is written.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { config } from '../../lib/config';
import { sha256File, withTempDir } from '../../lib/files';
import { parseS3Uri, type ObjectStore } from '../../lib/object-store';
import { ChunkCache, mayOverlap } from './chunk-cache';
import { listChunks } from './chunks';
import { duckdbOptions, sqlFileList, sqlString } from './duckdb';

export interface ExportFeedbackInput {
  store: ObjectStore;
  /** s3:// prefix of the serving logs. */
  prefix: string;
  model: string;
  env: string;
  fromMs: number;
  toMs: number;
  /** s3:// URI of the JSON-lines file to write. */
  outUri: string;
  /** Feedback events to keep (default ['FEEDBACK_EVENT_CLICK']). */
  events?: readonly string[];
  /** Also read chunks of the legacy layout (no env partition). */
  includeLegacy?: boolean;
  /** Local chunk cache root (default the config's cacheDir). */
  cacheDir?: string;
  cache?: ChunkCache;
}

export interface ExportFeedbackResult {
  /** Undefined when no record matched (nothing written). */
  uri: string | undefined;
  rows: number;
  sha256: string | undefined;
  fromMs: number;
  toMs: number;
}

/** The fields of a FeedbackLogRecord (serving/log-records.ts) in the order they are written, with their types. */
const FIELDS: [string, string][] = [
  ['time_ms', 'BIGINT'],
  ['request_id', 'VARCHAR'],
  ['user_id', 'VARCHAR'],
  ['item_id', 'VARCHAR'],
  ['event', 'VARCHAR'],
  ['event_time_ms', 'BIGINT'],
  ['value', 'DOUBLE'],
  ['model_name', 'VARCHAR'],
  ['model_version', 'VARCHAR'],
];
const EVENT_NAME = /^FEEDBACK_EVENT_[A-Z_]+$/;

export async function exportFeedback(input: ExportFeedbackInput): Promise<ExportFeedbackResult> {
  const { store, fromMs, toMs } = input;
  const events = input.events ?? ['FEEDBACK_EVENT_CLICK'];
  if (events.length === 0) throw new Error('feedback export: events must name at least one event');
  for (const e of events)
    if (!EVENT_NAME.test(e))
      throw new Error(`feedback export: events: ${JSON.stringify(e)} is not a feedback event name (FEEDBACK_EVENT_*)`);
  if (!(Number.isFinite(fromMs) && Number.isFinite(toMs) && toMs > fromMs))
    throw new Error(`feedback export: [fromMs, toMs) must be finite and non-empty, got [${fromMs}, ${toMs})`);
  parseS3Uri(input.outUri);
  const none: ExportFeedbackResult = { uri: undefined, rows: 0, sha256: undefined, fromMs, toMs };

  const chunks = await listChunks(store, {
    prefix: input.prefix,
    kind: 'feedback',
    model: input.model,
    env: input.env,
    fromMs,
    toMs,
    includeLegacy: input.includeLegacy,
  });
  const cache = input.cache ?? new ChunkCache({ store, cacheDir: input.cacheDir ?? config().cacheDir });
  const files = (await cache.fetch(chunks)).filter((c) => mayOverlap(c.index, fromMs, toMs)).map((c) => c.file);
  if (files.length === 0) return none;

  return withTempDir('feedback-export', async (dir) => {
    const out = path.join(dir, 'feedback.jsonl');
    const instance = await DuckDBInstance.create(':memory:', duckdbOptions());
    const conn = await instance.connect();
    let rows: number;
    try {
      const columns = `{${FIELDS.map(([f, t]) => `${f}: '${t}'`).join(', ')}}`;
      const names = FIELDS.map(([f]) => f).join(', ');
      const result = await conn.runAndReadAll(
        `COPY (SELECT ${names}
               FROM read_json(${sqlFileList(files)}, format = 'newline_delimited', ignore_errors = true,
                              columns = ${columns})
               WHERE time_ms >= ${fromMs} AND time_ms < ${toMs} AND event IN (${events.map(sqlString).join(', ')})
               ORDER BY ${FIELDS.map(([f]) => `${f} NULLS FIRST`).join(', ')})
         TO ${sqlString(out)} (FORMAT json)`,
      );
      rows = Number(result.getRows()[0]?.[0] ?? 0);
    } finally {
      conn.closeSync();
      instance.closeSync();
    }
    if (rows === 0) return none;
    const sha256 = await sha256File(out);
    await store.putFile(input.outUri, out);
    await fs.rm(out, { force: true });
    return { uri: input.outUri, rows, sha256, fromMs, toMs };
  });
}
