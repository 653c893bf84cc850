/**
 * Statistics of a dataset version for validation against the previous version (TFX-style): everything a comparator
 * needs, computed once from the version's Parquet files with DuckDB and stored next to them as `statistics.json`.
 *
 * Unlike the manifest's summaries, nothing here is averaged away: volume is kept per day (a day with half the volume
 * stays visible), popularity per raw item id, activity as a histogram over fixed buckets (comparable across
 * versions), the largest gaps between hours with data, and rating values with their counts. The size is bounded by
 * the number of days, items and users, not rows (ML-1M: ~1,000 days, 3,706 items, 6,040 users).
 */
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { z } from 'zod';
import type { Manifest } from './manifest';
import { SPLIT_NAMES } from './split';

export const DAY_S = 86_400;
export const HOUR_S = 3_600;
/** How many of the largest gaps between hours with data are kept. */
export const KEPT_GAPS = 10;

/** Lower edges of the interactions-per-user buckets: [1], [2], [3, 5), [5, 10), ... [1000, inf). */
export const ACTIVITY_EDGES = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000] as const;
export const activityBucket = (n: number): string => {
  let i = ACTIVITY_EDGES.length - 1;
  while (i > 0 && n < ACTIVITY_EDGES[i]!) i--;
  const lo = ACTIVITY_EDGES[i]!;
  const hi = ACTIVITY_EDGES[i + 1];
  return hi === undefined ? `${lo}+` : hi === lo + 1 ? String(lo) : `${lo}-${hi - 1}`;
};

export const Gap = z.object({
  /** Start of the last hour with data before the gap, unix s. */
  from: z.number(),
  /** Start of the first hour with data after the gap, unix s. */
  to: z.number(),
  /** Hours without any interaction. */
  hours: z.number(),
});
export type Gap = z.infer<typeof Gap>;

export const DatasetStatistics = z.object({
  statisticsVersion: z.literal(1),
  rows: z.number(),
  users: z.number(),
  items: z.number(),
  /** file -> column -> DuckDB type, read from the Parquet files themselves. */
  schema: z.record(z.string(), z.record(z.string(), z.string())),
  timestamp: z.object({ min: z.number(), max: z.number() }),
  /** Interactions per UTC day, dense from `firstDay` (unix day number) to the last day with data, zeros included. */
  dailyVolume: z.object({ firstDay: z.number(), counts: z.array(z.number()) }),
  /** The largest gaps between consecutive hours with data, longest first (at most KEPT_GAPS). */
  gaps: z.array(Gap),
  /** Interactions per raw item id. */
  itemCounts: z.record(z.string(), z.number()),
  /** Interactions per raw user id. */
  userCounts: z.record(z.string(), z.number()),
  /** Number of users per interactions-per-user bucket (see activityBucket). */
  userActivity: z.record(z.string(), z.number()),
  /** Interactions per rating/event value; missing ratings under "null". */
  ratings: z.record(z.string(), z.number()),
});
export type DatasetStatistics = z.infer<typeof DatasetStatistics>;

export const dayLabel = (day: number) => new Date(day * DAY_S * 1000).toISOString().slice(0, 10);
export const hourLabel = (ts: number) => `${new Date(ts * 1000).toISOString().slice(0, 13).replace('T', ' ')}:00`;

const quote = (p: string) => `'${p.replace(/'/g, "''")}'`;

/**
 * Computes the statistics of a dataset version whose files (as named in `manifest.files`) are in `dir`.
 * ML-1M scale (1M rows) takes well under a second of DuckDB time. With `newerThan` (unix s), only the rows after that
 * time count: the new part of a version that extends the previous one.
 */
export async function computeStatistics(
  dir: string,
  manifest: Pick<Manifest, 'files'>,
  options: { newerThan?: number } = {},
): Promise<DatasetStatistics> {
  const files = Object.keys(manifest.files).sort();
  const splits = SPLIT_NAMES.map((s) => `${s}.parquet`).filter((f) => files.includes(f));
  for (const f of [...SPLIT_NAMES.map((s) => `${s}.parquet`), 'users.parquet', 'items.parquet'])
    if (!files.includes(f))
      throw new Error(`dataset statistics: the manifest lists no ${f} (files: ${files.join(', ')})`);
  const local = (f: string) => quote(path.join(dir, f));
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const rows = async (sql: string) => (await conn.runAndReadAll(sql)).getRows();
  try {
    const schema: DatasetStatistics['schema'] = {};
    for (const f of files) {
      const described = (await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${local(f)})`)).getRowObjects();
      schema[f] = Object.fromEntries(described.map((r) => [String(r.column_name), String(r.column_type)]));
    }
    await conn.run(
      `CREATE TEMP TABLE x AS SELECT user_idx, item_idx, ts, rating FROM read_parquet([${splits.map(local).join(', ')}])` +
        (options.newerThan === undefined ? '' : ` WHERE ts > ${Math.floor(options.newerThan)}`),
    );
    const [totals] = await rows(
      `SELECT CAST(count(*) AS DOUBLE), CAST(coalesce(min(ts), 0) AS DOUBLE), CAST(coalesce(max(ts), 0) AS DOUBLE),
              CAST(count(DISTINCT user_idx) AS DOUBLE), CAST(count(DISTINCT item_idx) AS DOUBLE) FROM x`,
    );
    const [n, tsMin, tsMax, users, items] = (totals ?? []).map(Number) as [number, number, number, number, number];

    const perDay = await rows(
      `SELECT CAST(floor(ts / ${DAY_S}) AS DOUBLE) d, CAST(count(*) AS DOUBLE) FROM x GROUP BY d ORDER BY d`,
    );
    const firstDay = perDay.length > 0 ? Number(perDay[0]![0]) : 0;
    const counts =
      perDay.length > 0 ? new Array<number>(Number(perDay[perDay.length - 1]![0]) - firstDay + 1).fill(0) : [];
    for (const [d, c] of perDay) counts[Number(d) - firstDay] = Number(c);

    const gapRows = await rows(
      `WITH h AS (SELECT DISTINCT CAST(floor(ts / ${HOUR_S}) AS BIGINT) h FROM x),
            g AS (SELECT lag(h) OVER (ORDER BY h) prev, h FROM h)
       SELECT CAST(prev AS DOUBLE), CAST(h AS DOUBLE) FROM g WHERE prev IS NOT NULL AND h - prev > 1
       ORDER BY h - prev DESC, prev LIMIT ${KEPT_GAPS}`,
    );
    const gaps = gapRows.map(([a, b]) => ({
      from: Number(a) * HOUR_S,
      to: Number(b) * HOUR_S,
      hours: Number(b) - Number(a) - 1,
    }));

    const itemCounts: Record<string, number> = {};
    for (const [id, c] of await rows(
      `SELECT i.item_id, CAST(count(*) AS DOUBLE) FROM x JOIN read_parquet(${local('items.parquet')}) i USING (item_idx)
       GROUP BY i.item_id ORDER BY i.item_id`,
    ))
      itemCounts[String(id)] = Number(c);
    const userCounts: Record<string, number> = {};
    const userActivity: Record<string, number> = {};
    for (const [id, c] of await rows(
      `SELECT u.user_id, CAST(count(*) AS DOUBLE) FROM x JOIN read_parquet(${local('users.parquet')}) u USING (user_idx)
       GROUP BY u.user_id ORDER BY u.user_id`,
    )) {
      userCounts[String(id)] = Number(c);
      const b = activityBucket(Number(c));
      userActivity[b] = (userActivity[b] ?? 0) + 1;
    }
    const ratings: Record<string, number> = {};
    for (const [r, c] of await rows(
      `SELECT CAST(rating AS DOUBLE) r, CAST(count(*) AS DOUBLE) FROM x GROUP BY r ORDER BY r NULLS LAST`,
    ))
      // Stored as FLOAT: 7 significant digits give back the value that was written (0.1, not 0.100000001).
      ratings[r === null ? 'null' : String(Number(Number(r).toPrecision(7)))] = Number(c);

    return {
      statisticsVersion: 1,
      rows: n,
      users,
      items,
      schema,
      timestamp: { min: tsMin, max: tsMax },
      dailyVolume: { firstDay, counts },
      gaps,
      itemCounts,
      userCounts,
      userActivity,
      ratings,
    };
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}
