/** Writes a built dataset as Parquet files in a local directory (the layout models/data.py reads). */
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { BuiltDataset } from './build';
import { SPLIT_NAMES } from './split';

export const INTERACTION_SCHEMA = { user_idx: 'INTEGER', item_idx: 'INTEGER', ts: 'BIGINT', rating: 'FLOAT' };
export const USER_SCHEMA = { user_idx: 'INTEGER', user_id: 'VARCHAR' };
export const ITEM_SCHEMA = { item_idx: 'INTEGER', item_id: 'VARCHAR' };

/** Returns the file names written, with their row counts. */
export async function writeDatasetParquet(ds: BuiltDataset, dir: string): Promise<Record<string, number>> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const sql = (s: string) => conn.run(s);
  const quote = (p: string) => `'${p.replace(/'/g, "''")}'`;
  try {
    await sql(
      'CREATE TABLE interactions (user_idx INTEGER, item_idx INTEGER, ts BIGINT, rating FLOAT, split UTINYINT)',
    );
    const a = await conn.createAppender('interactions');
    for (let i = 0; i < ds.rows.length; i++) {
      const r = ds.rows[i]!;
      a.appendInteger(ds.userIdx[i]!);
      a.appendInteger(ds.itemIdx[i]!);
      a.appendBigInt(BigInt(r.ts));
      if (Number.isNaN(r.rating)) a.appendNull();
      else a.appendFloat(r.rating);
      a.appendUTinyInt(ds.split[i]!);
      a.endRow();
    }
    a.closeSync();
    await sql('CREATE TABLE users (user_idx INTEGER, user_id VARCHAR)');
    const u = await conn.createAppender('users');
    ds.users.forEach((id, i) => {
      u.appendInteger(i);
      u.appendVarchar(id);
      u.endRow();
    });
    u.closeSync();
    await sql('CREATE TABLE items (item_idx INTEGER, item_id VARCHAR)');
    const it = await conn.createAppender('items');
    ds.items.forEach((id, i) => {
      it.appendInteger(i + 1);
      it.appendVarchar(id);
      it.endRow();
    });
    it.closeSync();

    const files: Record<string, number> = {};
    for (const [s, name] of SPLIT_NAMES.entries()) {
      const file = `${name}.parquet`;
      await sql(
        `COPY (SELECT user_idx, item_idx, ts, rating FROM interactions WHERE split = ${s} ORDER BY ts, user_idx, item_idx)
         TO ${quote(path.join(dir, file))} (FORMAT parquet, COMPRESSION zstd)`,
      );
      files[file] = ds.splitCounts[s as 0 | 1 | 2];
    }
    await sql(
      `COPY (SELECT * FROM users ORDER BY user_idx) TO ${quote(path.join(dir, 'users.parquet'))} (FORMAT parquet)`,
    );
    await sql(
      `COPY (SELECT * FROM items ORDER BY item_idx) TO ${quote(path.join(dir, 'items.parquet'))} (FORMAT parquet)`,
    );
    files['users.parquet'] = ds.users.length;
    files['items.parquet'] = ds.items.length;
    return files;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}
