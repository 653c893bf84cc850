/**
 * Reduces one drift window of served traffic to a WindowSummary (lib/drift/summary.ts): the recommend and feedback
 * chunks of (model, env) are listed by hour, fetched through the local chunk cache and read by DuckDB from local
 * files in one pass each, with an explicit column schema so that old records (no history_items) and malformed lines
 * neither fail the window nor change its types. Buckets come from the reference dataset version, never from the
 * traffic. Which records count where:
 *
 * - recommend records with time_ms in [startMs, endMs); feedback records in [startMs, endMs + graceMs) for the CTR
 *   join (an answer counts as clicked when a FEEDBACK_EVENT_CLICK names its request_id), in [startMs, endMs) for
 *   everything else;
 * - every answer counts for user-unknown, history-length, requested-popularity (one count per logged history item),
 *   fallback and versions; answers of the popularity fallback do not count for the signals of what the model
 *   recommended (recommended-popularity, score-top1, score-mean, ctr, concentration): those judge the model.
 *
 * Scores are bucketed in SQL by an ASOF join on a table of SCORE_EDGES (the largest edge at or below the score), the
 * same rule as scoreBucket; sqlScoreBuckets exposes it so a test holds the two together.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import {
  BUCKETS,
  emptyCounts,
  HISTORY_EDGES,
  SCORE_EDGES,
  UNKNOWN_ITEM_BUCKET,
  type SignalName,
  type WindowSummary,
} from '../../lib/drift/summary';
import type { ObjectStore } from '../../lib/object-store';
import { ChunkCache, mayOverlap, type FetchProgress } from './chunk-cache';
import { listChunks } from './chunks';
import { duckdbOptions, sqlFileList } from './duckdb';
import type { DriftReference } from './reference';

export { loadDriftReference, referenceFromStatistics, type DriftReference } from './reference';

export const FEEDBACK_EVENT_CLICK = 'FEEDBACK_EVENT_CLICK';

export interface DriftWindow {
  startMs: number;
  endMs: number;
}

export interface SummarizeFilesInput {
  /** Local JSON-lines files of recommend records (any may hold records outside the window). */
  recommendFiles: readonly string[];
  /** Local JSON-lines files of feedback records, up to endMs + graceMs. */
  feedbackFiles: readonly string[];
  window: DriftWindow;
  /** How long after the window a click still counts for its answers. */
  graceMs: number;
  reference: DriftReference;
  model: string;
  env: string;
}

/** The recommend record columns read (others are ignored); a missing field is NULL. */
const RECOMMEND_COLUMNS =
  "{time_ms: 'DOUBLE', request_id: 'VARCHAR', user_id: 'VARCHAR', history_len: 'DOUBLE', " +
  "history_items: 'VARCHAR[]', items: 'STRUCT(item_id VARCHAR, score DOUBLE)[]', model_version: 'VARCHAR', " +
  "fallback: 'BOOLEAN'}";
const FEEDBACK_COLUMNS = "{time_ms: 'DOUBLE', request_id: 'VARCHAR', item_id: 'VARCHAR', event: 'VARCHAR'}";

/** The history-length bucket of column `col`, as historyBucket computes it. */
const historyBucketSql = (col: string): string =>
  `CASE ${HISTORY_EDGES.map((e, i) => ({ e, i }))
    .slice(1)
    .reverse()
    .map(({ e, i }) => `WHEN ${col} >= ${e} THEN ${i}`)
    .join(' ')} ELSE 0 END`;

/**
 * Joins relation `s` (column x, non-null) to its score bucket: the largest edge at or below x, as scoreBucket; none
 * (below every edge) is bucket 0, and so is NaN, which scoreBucket puts there (no comparison holds) while DuckDB
 * sorts it above every number. JSON cannot carry NaN, but the rule is the same everywhere.
 */
const SCORE_BUCKET_JOIN = 'ASOF LEFT JOIN score_edges e ON s.x >= e.lo';
const SCORE_BUCKET_EXPR = 'CASE WHEN isnan(s.x) THEN 0 ELSE coalesce(e.bucket, 0) END';

function checkInput(window: DriftWindow, graceMs: number): void {
  if (!Number.isFinite(window.startMs) || !Number.isFinite(window.endMs) || !(window.endMs > window.startMs))
    throw new Error(`drift window: [startMs, endMs) must be finite and non-empty, got ${JSON.stringify(window)}`);
  if (!(Number.isFinite(graceMs) && graceMs >= 0))
    throw new Error(`drift window: graceMs must be a non-negative number, got ${graceMs}`);
}

async function openDuckDB(): Promise<{ conn: DuckDBConnection; close: () => void }> {
  const instance = await DuckDBInstance.create(':memory:', duckdbOptions());
  const conn = await instance.connect();
  // Order of rows never matters to a count; not keeping it lets DuckDB read the files in parallel more freely.
  await conn.run('SET preserve_insertion_order = false');
  return {
    conn,
    close: () => {
      conn.closeSync();
      instance.closeSync();
    },
  };
}

async function createScoreEdges(conn: DuckDBConnection): Promise<void> {
  await conn.run('CREATE TABLE score_edges (lo DOUBLE, bucket INTEGER)');
  const app = await conn.createAppender('score_edges');
  SCORE_EDGES.forEach((lo, k) => {
    app.appendDouble(lo);
    app.appendInteger(k + 1);
    app.endRow();
  });
  app.closeSync();
}

/** The score bucket of each value by the SQL the summaries use (for tests: it must agree with scoreBucket). */
export async function sqlScoreBuckets(values: readonly number[]): Promise<number[]> {
  const { conn, close } = await openDuckDB();
  try {
    await createScoreEdges(conn);
    await conn.run('CREATE TABLE vals (i INTEGER, x DOUBLE)');
    const app = await conn.createAppender('vals');
    values.forEach((x, i) => {
      app.appendInteger(i);
      app.appendDouble(x);
      app.endRow();
    });
    app.closeSync();
    const rows = (
      await conn.runAndReadAll(`SELECT s.i, ${SCORE_BUCKET_EXPR} FROM vals s ${SCORE_BUCKET_JOIN} ORDER BY s.i`)
    ).getRows();
    return rows.map(([, b]) => Number(b));
  } finally {
    close();
  }
}

async function loadReference(conn: DuckDBConnection, reference: DriftReference): Promise<void> {
  await conn.run('CREATE TABLE ref_items (item_id VARCHAR, decile INTEGER)');
  let app = await conn.createAppender('ref_items');
  for (const [id, decile] of reference.itemDeciles) {
    app.appendVarchar(id);
    app.appendInteger(decile);
    app.endRow();
  }
  app.closeSync();
  await conn.run('CREATE TABLE ref_users (user_id VARCHAR)');
  app = await conn.createAppender('ref_users');
  for (const id of reference.knownUsers) {
    app.appendVarchar(id);
    app.endRow();
  }
  app.closeSync();
}

/** Summarises local log files into the window's bucket counts. */
export async function summarizeFiles(input: SummarizeFilesInput): Promise<WindowSummary> {
  const { window, graceMs, reference } = input;
  checkInput(window, graceMs);
  const { startMs, endMs } = window;
  const { conn, close } = await openDuckDB();
  const rows = async (sql: string) => (await conn.runAndReadAll(sql)).getRows();
  try {
    await createScoreEdges(conn);
    await loadReference(conn, reference);

    const recommendSource =
      input.recommendFiles.length === 0
        ? `(SELECT * FROM (VALUES (NULL::DOUBLE, NULL::VARCHAR, NULL::VARCHAR, NULL::DOUBLE, NULL::VARCHAR[],
             NULL::STRUCT(item_id VARCHAR, score DOUBLE)[], NULL::VARCHAR, NULL::BOOLEAN))
             t(time_ms, request_id, user_id, history_len, history_items, items, model_version, fallback) LIMIT 0)`
        : `read_json(${sqlFileList(input.recommendFiles)}, format = 'newline_delimited', ignore_errors = true,
             columns = ${RECOMMEND_COLUMNS})`;
    await conn.run(
      `CREATE TABLE r AS
       SELECT request_id, user_id, coalesce(history_len, 0) AS history_len, history_items, items,
              coalesce(model_version, '') AS model_version, coalesce(fallback, false) AS fallback
       FROM ${recommendSource} WHERE time_ms >= ${startMs} AND time_ms < ${endMs}`,
    );
    const feedbackSource =
      input.feedbackFiles.length === 0
        ? `(SELECT * FROM (VALUES (NULL::DOUBLE, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR))
             t(time_ms, request_id, item_id, event) LIMIT 0)`
        : `read_json(${sqlFileList(input.feedbackFiles)}, format = 'newline_delimited', ignore_errors = true,
             columns = ${FEEDBACK_COLUMNS})`;
    await conn.run(
      `CREATE TABLE f AS SELECT time_ms, request_id, item_id, event FROM ${feedbackSource}
       WHERE time_ms >= ${startMs} AND time_ms < ${endMs + graceMs}`,
    );

    const counts = emptyCounts();
    /** Adds (bucket, count) rows to a signal, checking the bucket is one of its own. */
    const add = (signal: SignalName, result: unknown[][]) => {
      for (const [b, n] of result) {
        const i = Number(b);
        if (!(Number.isInteger(i) && i >= 0 && i < BUCKETS[signal]))
          throw new Error(`drift summary: bucket ${String(b)} out of range for ${signal}`);
        counts[signal][i]! += Number(n);
      }
    };

    const [[requests]] = (await rows('SELECT count(*) FROM r')) as [[bigint]];
    add(
      'user-unknown',
      await rows(
        `SELECT CASE WHEN user_id IN (SELECT user_id FROM ref_users) THEN 0 ELSE 1 END b, count(*) FROM r GROUP BY b`,
      ),
    );
    add('history-length', await rows(`SELECT ${historyBucketSql('history_len')} b, count(*) FROM r GROUP BY b`));
    add(
      'requested-popularity',
      await rows(
        `WITH h AS (SELECT unnest(history_items) AS item_id FROM r),
              c AS (SELECT item_id, count(*) AS n FROM h WHERE item_id IS NOT NULL GROUP BY item_id)
         SELECT coalesce(d.decile, ${UNKNOWN_ITEM_BUCKET}) b, sum(n) FROM c LEFT JOIN ref_items d USING (item_id)
         GROUP BY b`,
      ),
    );
    add('fallback', await rows('SELECT CASE WHEN fallback THEN 1 ELSE 0 END b, count(*) FROM r GROUP BY b'));
    const versions: Record<string, number> = {};
    for (const [v, n] of await rows('SELECT model_version, count(*) FROM r GROUP BY 1 ORDER BY 1'))
      versions[String(v)] = Number(n);

    // What the model recommended: its answers only.
    await conn.run(
      `CREATE TABLE rec AS
       SELECT item_id, count(*) AS n
       FROM (SELECT unnest(list_transform(items, i -> i.item_id)) AS item_id FROM r WHERE NOT fallback)
       WHERE item_id IS NOT NULL GROUP BY item_id`,
    );
    add(
      'recommended-popularity',
      await rows(
        `SELECT coalesce(d.decile, ${UNKNOWN_ITEM_BUCKET}) b, sum(n) FROM rec LEFT JOIN ref_items d USING (item_id)
         GROUP BY b`,
      ),
    );
    // Entropy from the histogram of per-item counts, summed in JS in a fixed order: a parallel floating-point sum
    // in SQL differs in the last bits from run to run, and a window's summary must not.
    let distinctItems = 0;
    let t = 0;
    let nLogN = 0;
    for (const [n, items] of await rows('SELECT n, count(*) FROM rec GROUP BY n ORDER BY n')) {
      const c = Number(n);
      const k = Number(items);
      distinctItems += k;
      t += c * k;
      nLogN += k * c * Math.log2(c);
    }
    // H = -sum(p log2 p) with p = n / T, rewritten as log2 T - sum(n log2 n) / T.
    const entropyBits = t > 0 ? Math.max(0, Math.log2(t) - nLogN / t) : 0;

    const scored = 'FROM r WHERE NOT fallback AND len(items) > 0';
    add(
      'score-top1',
      await rows(
        `SELECT ${SCORE_BUCKET_EXPR} b, count(*) FROM (SELECT items[1].score AS x ${scored}) s
         ${SCORE_BUCKET_JOIN} WHERE s.x IS NOT NULL GROUP BY b`,
      ),
    );
    add(
      'score-mean',
      await rows(
        `SELECT ${SCORE_BUCKET_EXPR} b, count(*)
         FROM (SELECT list_avg(list_transform(items, i -> i.score)) AS x ${scored}) s
         ${SCORE_BUCKET_JOIN} WHERE s.x IS NOT NULL GROUP BY b`,
      ),
    );
    add(
      'ctr',
      await rows(
        `WITH clicks AS (SELECT DISTINCT request_id FROM f
                         WHERE event = '${FEEDBACK_EVENT_CLICK}' AND request_id IS NOT NULL AND request_id <> '')
         SELECT CASE WHEN request_id IN (SELECT request_id FROM clicks) THEN 1 ELSE 0 END b, count(*)
         FROM r WHERE NOT fallback GROUP BY b`,
      ),
    );

    const [[feedback]] = (await rows(`SELECT count(*) FROM f WHERE time_ms < ${endMs}`)) as [[bigint]];
    add(
      'feedback-new-items',
      await rows(
        `SELECT CASE WHEN item_id IN (SELECT item_id FROM ref_items) THEN 0 ELSE 1 END b, count(*)
         FROM f WHERE time_ms < ${endMs} GROUP BY b`,
      ),
    );

    return {
      summaryVersion: 1,
      model: input.model,
      env: input.env,
      window: { startMs, endMs },
      reference: { datasetUri: reference.datasetUri, datasetVersion: reference.datasetVersion },
      requests: Number(requests),
      feedback: Number(feedback),
      versions,
      chunks: input.recommendFiles.length + input.feedbackFiles.length,
      counts,
      concentration: {
        distinctItems,
        coverage: reference.catalogueSize > 0 ? distinctItems / reference.catalogueSize : 0,
        entropyBits,
      },
    };
  } finally {
    close();
  }
}

export interface SummarizeProgress {
  phase: 'list' | 'fetch' | 'summarize';
  /** While fetching: chunks done of total, downloaded, bytes downloaded. */
  fetch?: FetchProgress;
}

export interface SummarizeWindowInput {
  store: ObjectStore;
  /** s3:// prefix of the serving logs. */
  prefix: string;
  model: string;
  env: string;
  window: DriftWindow;
  graceMs: number;
  reference: DriftReference;
  cacheDir: string;
  /** Also read chunks of the legacy layout (written before the env partition; every environment mixed). */
  includeLegacy?: boolean;
  /** A cache to share between windows (default: one on cacheDir with its defaults). */
  cache?: ChunkCache;
  onProgress?: (p: SummarizeProgress) => void;
}

/** Lists the window's chunks, fetches them through the cache, skips those outside it, and summarises. */
export async function summarizeWindow(input: SummarizeWindowInput): Promise<WindowSummary> {
  const { window, graceMs, store } = input;
  checkInput(window, graceMs);
  const feedbackEnd = window.endMs + graceMs;
  const list = { prefix: input.prefix, model: input.model, env: input.env, includeLegacy: input.includeLegacy };
  input.onProgress?.({ phase: 'list' });
  const [recommend, feedback] = await Promise.all([
    listChunks(store, { ...list, kind: 'recommend', fromMs: window.startMs, toMs: window.endMs }),
    listChunks(store, { ...list, kind: 'feedback', fromMs: window.startMs, toMs: feedbackEnd }),
  ]);
  const cache = input.cache ?? new ChunkCache({ store, cacheDir: input.cacheDir });
  const fetched = await cache.fetch([...recommend, ...feedback], (p) =>
    input.onProgress?.({ phase: 'fetch', fetch: p }),
  );
  const recommendFiles = fetched
    .slice(0, recommend.length)
    .filter((c) => mayOverlap(c.index, window.startMs, window.endMs))
    .map((c) => c.file);
  const feedbackFiles = fetched
    .slice(recommend.length)
    .filter((c) => mayOverlap(c.index, window.startMs, feedbackEnd))
    .map((c) => c.file);
  input.onProgress?.({ phase: 'summarize' });
  return summarizeFiles({
    recommendFiles,
    feedbackFiles,
    window,
    graceMs,
    reference: input.reference,
    model: input.model,
    env: input.env,
  });
}
