/** Statistics from real Parquet files (written by the ETL's writer) against the same figures counted in plain code. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generateInteractions } from '../../../data/synthetic';
import { buildDataset, dedupe } from '../../../../lib/dataset/build';
import { EtlConfig } from '../../../../lib/dataset/etl-config';
import {
  activityBucket,
  computeStatistics,
  DatasetStatistics,
  DAY_S,
  HOUR_S,
  KEPT_GAPS,
} from '../../../../lib/dataset/statistics';
import type { Interaction } from '../../../../lib/dataset/validate';
import { writeDatasetParquet } from '../../../../lib/dataset/write-parquet';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-stats-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function statisticsOf(rows: Interaction[], sub: string): Promise<DatasetStatistics> {
  const { rows: deduped } = dedupe(
    rows.map((r, i) => ({ ...r, file: 'mem', line: i + 1 })),
    'drop',
  );
  const ds = buildDataset(deduped, 0, EtlConfig.parse({ format: 'csv' }));
  const out = path.join(dir, sub);
  await fs.mkdir(out);
  const files = await writeDatasetParquet(ds, out);
  const manifestFiles = Object.fromEntries(
    Object.entries(files).map(([f, n]) => [f, { uri: `s3://x/${f}`, rows: n, sha256: '' }]),
  );
  return DatasetStatistics.parse(await computeStatistics(out, { files: manifestFiles }));
}

const START = 1_699_920_000; // 2023-11-14 00:00 UTC

test('matches counts made directly from the rows: days, items, users, ratings, gaps, schema', async () => {
  const rows: Interaction[] = [
    ...generateInteractions({ users: 120, items: 60, interactions: 4000, seed: 5, startTime: START, spanDays: 10 }),
  ].map((r) => ({ user: r.userId, item: r.itemId, ts: r.timestamp, rating: r.rating }));
  // Plant a gap: nothing between day 4 12:00 and day 6 06:00.
  const kept = rows.filter((r) => r.ts < START + 4.5 * DAY_S || r.ts >= START + 6.25 * DAY_S);
  const s = await statisticsOf(kept, 'synthetic');

  expect(s.rows).toBe(kept.length);
  expect(s.users).toBe(new Set(kept.map((r) => r.user)).size);
  expect(s.items).toBe(new Set(kept.map((r) => r.item)).size);
  expect(s.timestamp).toEqual({ min: Math.min(...kept.map((r) => r.ts)), max: Math.max(...kept.map((r) => r.ts)) });

  const perDay = new Map<number, number>();
  for (const r of kept) perDay.set(Math.floor(r.ts / DAY_S), (perDay.get(Math.floor(r.ts / DAY_S)) ?? 0) + 1);
  expect(s.dailyVolume.firstDay).toBe(START / DAY_S);
  expect(s.dailyVolume.counts).toEqual(
    Array.from({ length: s.dailyVolume.counts.length }, (_, i) => perDay.get(START / DAY_S + i) ?? 0),
  );
  expect(s.dailyVolume.counts.reduce((a, b) => a + b, 0)).toBe(kept.length);

  const items: Record<string, number> = {};
  const users: Record<string, number> = {};
  const ratings: Record<string, number> = {};
  for (const r of kept) {
    items[r.item] = (items[r.item] ?? 0) + 1;
    users[r.user] = (users[r.user] ?? 0) + 1;
    ratings[String(r.rating)] = (ratings[String(r.rating)] ?? 0) + 1;
  }
  expect(s.itemCounts).toEqual(items);
  expect(s.userCounts).toEqual(users);
  expect(s.ratings).toEqual(ratings);
  const activity: Record<string, number> = {};
  for (const c of Object.values(users)) activity[activityBucket(c)] = (activity[activityBucket(c)] ?? 0) + 1;
  expect(s.userActivity).toEqual(activity);

  // The largest gap is the planted one, measured between the hours with data on either side.
  const hours = [...new Set(kept.map((r) => Math.floor(r.ts / HOUR_S)))].sort((a, b) => a - b);
  const gaps = hours.slice(1).map((h, i) => h - hours[i]! - 1);
  expect(s.gaps[0]!.hours).toBe(Math.max(...gaps));
  expect(s.gaps[0]!.hours).toBeGreaterThanOrEqual(42);
  expect(s.gaps[0]!.from).toBeLessThan(START + 4.5 * DAY_S);
  expect(s.gaps[0]!.to).toBeGreaterThanOrEqual(START + 6.25 * DAY_S);
  expect(s.gaps.length).toBeLessThanOrEqual(KEPT_GAPS);
  expect(s.gaps.map((g) => g.hours)).toEqual([...s.gaps.map((g) => g.hours)].sort((a, b) => b - a));

  expect(s.schema['train.parquet']).toEqual({
    user_idx: 'INTEGER',
    item_idx: 'INTEGER',
    ts: 'BIGINT',
    rating: 'FLOAT',
  });
  expect(s.schema['items.parquet']).toEqual({ item_idx: 'INTEGER', item_id: 'VARCHAR' });
});

test('missing ratings are counted under "null" and fractional ratings keep their written value', async () => {
  const rows: Interaction[] = [];
  for (let i = 0; i < 30; i++)
    rows.push({ user: `u${i % 3}`, item: `i${i}`, ts: START + i * 600, rating: i % 3 === 0 ? NaN : 0.1 * (i % 3) });
  const s = await statisticsOf(rows, 'ratings');
  expect(s.ratings).toEqual({ '0.1': 10, '0.2': 10, null: 10 });
  expect(s.userActivity).toEqual({ '10-19': 3 });
});

test('activity buckets are fixed and comparable across versions', () => {
  expect([1, 2, 3, 4, 5, 9, 10, 19, 20, 999, 1000, 50_000].map(activityBucket)).toEqual([
    '1',
    '2',
    '3-4',
    '3-4',
    '5-9',
    '5-9',
    '10-19',
    '10-19',
    '20-49',
    '500-999',
    '1000+',
    '1000+',
  ]);
});
