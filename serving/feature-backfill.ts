/**
 * Loads a dataset version's latest histories into the online store, so a cold store serves what the dataset fallback
 * serves: for each user the last N interactions (N = the store's historyLength) of all splits, chosen and ordered as
 * catalog-loader.ts chooses them (by time, ties by item index), recorded as DATASET_INTERACTION events. The namespace
 * is the dataset's name.
 *
 * Idempotent: an interaction's event id is its content (user, item, time), the same on every run and in every
 * version that contains it, so a rerun (or a retry after a crash) records nothing twice; a rerun changes nothing.
 * Popularity is left alone: the dataset's popularity is already the catalogue's, and old interactions are outside
 * the store's window anyway. Users are loaded in a fixed order and batches end on a user boundary, so `startAtUser`
 * resumes after the users a previous attempt finished.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { localDataset } from '../lib/dataset/cache';
import { manifestUri, parseDatasetUri } from '../lib/dataset/ref';
import type { ObjectStore } from '../lib/object-store';
import { DATASET_EVENT, datasetEventId } from './feature-rules';
import type { StoreEvent } from './online-store';
import { connectOnlineStore, type ConnectOptions, type RedisOnlineStore } from './redis-store';

export interface BackfillProgress {
  /** Users whose histories are fully written. */
  users: number;
  usersTotal: number;
  /** Events written so far (new or already there). */
  events: number;
  eventsTotal: number;
  /** Events the store did not have. */
  recorded: number;
  /** Events the store already had (a rerun: all of them). */
  duplicates: number;
}

export interface BackfillResult extends BackfillProgress {
  namespace: string;
  datasetVersion: string;
  historyLength: number;
}

export interface BackfillOptions {
  /** s3://<bucket>/datasets/<name>/<version>/ */
  datasetUri: string;
  store: RedisOnlineStore;
  objectStore: ObjectStore;
  /** Where the local copy of the dataset goes (lib/dataset/cache.ts). */
  cacheDir: string;
  /** Events per pipeline (rounded up to whole users); default 2000. */
  batchSize?: number;
  /** Skip this many users (in load order): those a previous attempt finished. */
  startAtUser?: number;
  /** Checked between batches: an aborted backfill stops there (what it wrote stays, and is idempotent). */
  signal?: AbortSignal;
  onProgress?(p: BackfillProgress): void;
}

const quote = (p: string) => `'${p.replace(/'/g, "''")}'`;

/** Connects for a backfill: long write timeouts, and a failure (not the serving tier's silent fallback) when down. */
export async function openBackfillStore(opts: ConnectOptions): Promise<RedisOnlineStore> {
  const store = await connectOnlineStore({
    writeTimeoutMs: 60_000,
    connectWaitMs: 10_000,
    maxPendingCommands: 1_000_000,
    ...opts,
  });
  if (!store.connected) {
    await store.close();
    throw new Error(`Redis at ${opts.url} is not reachable; nothing was loaded`);
  }
  return store;
}

export async function backfillFeatures(opts: BackfillOptions): Promise<BackfillResult> {
  const ref = parseDatasetUri(opts.datasetUri);
  const namespace = ref.name;
  const N = opts.store.settings.historyLength;
  const batchSize = opts.batchSize ?? 2000;
  const startAt = opts.startAtUser ?? 0;
  // A batch is one pipeline: it must fit in the connection's queue (and may exceed batchSize by one user's N).
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize + N > opts.store.settings.maxPendingCommands)
    throw new Error(
      `batch size must be a positive integer of at most ${opts.store.settings.maxPendingCommands - N} ` +
        `(the store's maxPendingCommands less one user's history), got ${batchSize}`,
    );
  const dir = await localDataset(manifestUri(ref.uri), opts.objectStore, opts.cacheDir);
  const file = (name: string) => path.join(dir, name);
  for (const required of ['users.parquet', 'items.parquet'])
    if (!existsSync(file(required))) throw new Error(`dataset ${ref.uri} has no ${required}`);
  const splits = ['train.parquet', 'valid.parquet', 'test.parquet'].map(file).filter((f) => existsSync(f));
  if (splits.length === 0) throw new Error(`dataset ${ref.uri} has no split (train/valid/test.parquet)`);
  const interactions = `read_parquet([${splits.map(quote).join(', ')}])`;

  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const [[usersTotal, eventsTotal]] = (await conn
      .runAndReadAll(
        `SELECT count(*)::INTEGER, coalesce(sum(least(n, ${N})), 0)::BIGINT
       FROM (SELECT user_idx, count(*) AS n FROM ${interactions} GROUP BY user_idx)`,
      )
      .then((r) => r.getRows())) as [[number, bigint]];
    const progress: BackfillProgress = {
      users: Math.min(startAt, usersTotal),
      usersTotal,
      events: 0,
      eventsTotal: Number(eventsTotal),
      recorded: 0,
      duplicates: 0,
    };
    // The last N of each user, oldest first: catalog-loader.ts's choice and order, ids joined in.
    const result = await conn.stream(
      `WITH recent AS (
         SELECT user_idx, item_idx, ts, rating,
                row_number() OVER (PARTITION BY user_idx ORDER BY ts DESC, item_idx DESC) AS rn,
                dense_rank() OVER (ORDER BY user_idx) - 1 AS ordinal
         FROM ${interactions})
       SELECT r.ordinal::INTEGER, u.user_id::VARCHAR, i.item_id::VARCHAR, r.ts::BIGINT, r.rating::DOUBLE
       FROM recent r
       JOIN read_parquet(${quote(file('users.parquet'))}) u USING (user_idx)
       JOIN read_parquet(${quote(file('items.parquet'))}) i USING (item_idx)
       WHERE r.rn <= ${N} AND r.ordinal >= ${startAt}
       ORDER BY r.user_idx, r.rn DESC`,
    );

    let batch: StoreEvent[] = [];
    let batchUsers = 0;
    let lastOrdinal = -1;
    const flush = async () => {
      if (batch.length === 0) return;
      opts.signal?.throwIfAborted();
      const outcomes = await opts.store.record(namespace, batch, { countPopularity: false });
      for (const o of outcomes) {
        if (o.status !== 'recorded')
          throw new Error(
            `the online store did not take the batch (${o.reason}); rerun the backfill: it is idempotent`,
          );
        if (o.duplicate) progress.duplicates++;
        else progress.recorded++;
      }
      progress.events += batch.length;
      progress.users += batchUsers;
      batch = [];
      batchUsers = 0;
      opts.onProgress?.({ ...progress });
    };
    for await (const rows of result.yieldRows()) {
      for (const [ordinal, userId, itemId, ts, rating] of rows) {
        if (ordinal !== lastOrdinal) {
          // A batch ends on a user boundary, so `users` counts whole users (what a resume skips).
          if (batch.length >= batchSize) await flush();
          batchUsers++;
          lastOrdinal = ordinal as number;
        }
        const timeMs = Number(ts) * 1000;
        batch.push({
          eventId: datasetEventId(String(userId), String(itemId), timeMs),
          userId: String(userId),
          itemId: String(itemId),
          event: DATASET_EVENT,
          timeMs,
          value: typeof rating === 'number' && Number.isFinite(rating) ? rating : 0,
        });
      }
    }
    await flush();
    return { ...progress, namespace, datasetVersion: ref.version, historyLength: N };
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}
