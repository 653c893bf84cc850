/**
 * Builds a Catalog from a dataset version's Parquet files (layout: lib/dataset/write-parquet.ts) with DuckDB:
 * items.parquet for ids, train.parquet for popularity (what the model was trained on), and all splits for each
 * user's latest interactions (everything before serving time is history).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { Catalog, UserHistories } from './catalog';

const quote = (p: string) => `'${p.replace(/'/g, "''")}'`;

export async function loadCatalog(dir: string, historyLen: number): Promise<Catalog> {
  const file = (name: string) => path.join(dir, name);
  for (const required of ['items.parquet', 'train.parquet'])
    if (!existsSync(file(required))) throw new Error(`dataset copy ${dir} has no ${required}`);
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const columns = async (sql: string) => (await conn.runAndReadAll(sql)).getColumns();
  try {
    const [idxCol = [], idCol = []] = await columns(
      `SELECT item_idx::INTEGER, item_id::VARCHAR FROM read_parquet(${quote(file('items.parquet'))}) ORDER BY 1`,
    );
    const itemIds: string[] = [''];
    for (let i = 0; i < idxCol.length; i++) {
      if (idxCol[i] !== i + 1)
        throw new Error(`items.parquet: item_idx must be 1..n without gaps; row ${i + 1} has ${String(idxCol[i])}`);
      itemIds.push(String(idCol[i]));
    }

    const [popIdx = [], popShare = []] = await columns(
      `SELECT item_idx::INTEGER, (count(*) / sum(count(*)) OVER ())::DOUBLE
       FROM read_parquet(${quote(file('train.parquet'))}) GROUP BY item_idx ORDER BY count(*) DESC, item_idx`,
    );
    const popular = Int32Array.from(popIdx as number[]);
    const popularScore = Float32Array.from(popShare as number[]);

    let users = UserHistories.empty();
    const splits = ['train.parquet', 'valid.parquet', 'test.parquet'].map(file).filter((f) => existsSync(f));
    if (existsSync(file('users.parquet'))) {
      // The last L interactions of each user, oldest first; ties in time broken by item index, as in training.
      const [uid = [], item = [], timeMs = []] = await columns(
        `WITH recent AS (
           SELECT user_idx, item_idx, ts,
                  row_number() OVER (PARTITION BY user_idx ORDER BY ts DESC, item_idx DESC) AS rn
           FROM read_parquet([${splits.map(quote).join(', ')}]))
         SELECT u.user_id::VARCHAR, r.item_idx::INTEGER, (r.ts * 1000)::DOUBLE
         FROM recent r JOIN read_parquet(${quote(file('users.parquet'))}) u USING (user_idx)
         WHERE r.rn <= ${historyLen}
         ORDER BY r.user_idx, r.rn DESC`,
      );
      const index = new Map<string, number>();
      const offsets: number[] = [0];
      for (let i = 0; i < uid.length; i++) {
        const id = String(uid[i]);
        if (!index.has(id)) {
          if (i > 0) offsets.push(i);
          index.set(id, index.size);
        }
      }
      if (uid.length > 0) offsets.push(uid.length);
      // Dataset times are epoch seconds; the graphs of the time-aware families take epoch ms.
      users = new UserHistories(
        index,
        Int32Array.from(offsets),
        Int32Array.from(item as number[]),
        Float64Array.from(timeMs as number[]),
      );
    }
    return new Catalog(itemIds, popular, popularScore, users);
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}
