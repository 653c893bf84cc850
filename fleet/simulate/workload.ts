/**
 * The simulator's users, from a local copy of a dataset version (layout: lib/dataset/write-parquet.ts): each user who
 * has held-out (test split) interactions, with the history a client would send (the last L of their train and valid
 * interactions, oldest first) and the held-out items a "click" is judged against. Ids are the raw ones of
 * users.parquet and items.parquet, as a real caller would send them. The drift scenarios (scenarios.ts) also need the
 * catalogue by popularity: loadCatalogue, from items.parquet and train.parquet of the same copy.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Catalogue } from './scenarios';

export interface SimUser {
  userId: string;
  /** Oldest first, at most `historyLen`. */
  history: string[];
  /** The user's held-out items (test split). */
  heldOut: ReadonlySet<string>;
}

export interface WorkloadOptions {
  /** Items of history sent per request (the server reads only its model's last history_len). Default 50. */
  historyLen?: number;
  /** Keep the first N users (by user index) only. */
  maxUsers?: number;
}

const quote = (p: string) => `'${p.replace(/'/g, "''")}'`;

export async function loadWorkload(dir: string, opts: WorkloadOptions = {}): Promise<SimUser[]> {
  const historyLen = opts.historyLen ?? 50;
  if (!Number.isInteger(historyLen) || historyLen < 1)
    throw new Error(`historyLen must be a positive integer, got ${historyLen}`);
  if (opts.maxUsers !== undefined && !(Number.isInteger(opts.maxUsers) && opts.maxUsers > 0))
    throw new Error(`maxUsers (--users) must be a positive integer, got ${opts.maxUsers}`);
  const file = (name: string) => path.join(dir, name);
  for (const f of ['train.parquet', 'test.parquet', 'users.parquet', 'items.parquet'])
    if (!existsSync(file(f))) throw new Error(`dataset copy ${dir} has no ${f}; the simulator replays its test split`);
  const past = ['train.parquet', 'valid.parquet'].map(file).filter((f) => existsSync(f));
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const limit = opts.maxUsers
      ? `WHERE user_idx IN (SELECT DISTINCT user_idx FROM test ORDER BY 1 LIMIT ${opts.maxUsers})`
      : '';
    const reader = await conn.runAndReadAll(
      `WITH test AS (SELECT user_idx, item_idx FROM read_parquet(${quote(file('test.parquet'))})),
            chosen AS (SELECT DISTINCT user_idx FROM test ${limit}),
            past AS (
              SELECT user_idx, item_idx,
                     row_number() OVER (PARTITION BY user_idx ORDER BY ts DESC, item_idx DESC) AS rn
              FROM read_parquet([${past.map(quote).join(', ')}]) WHERE user_idx IN (SELECT user_idx FROM chosen)),
            items AS (SELECT item_idx, item_id::VARCHAR AS item_id FROM read_parquet(${quote(file('items.parquet'))})),
            hist AS (
              SELECT p.user_idx, list(i.item_id ORDER BY p.rn DESC) AS history
              FROM past p JOIN items i USING (item_idx) WHERE p.rn <= ${historyLen} GROUP BY p.user_idx),
            held AS (
              SELECT t.user_idx, list(DISTINCT i.item_id) AS held
              FROM test t JOIN items i USING (item_idx) WHERE t.user_idx IN (SELECT user_idx FROM chosen)
              GROUP BY t.user_idx)
       SELECT u.user_id::VARCHAR, h.history, d.held
       FROM hist h JOIN held d USING (user_idx)
       JOIN read_parquet(${quote(file('users.parquet'))}) u USING (user_idx)
       ORDER BY h.user_idx`,
    );
    const users: SimUser[] = [];
    for (const row of reader.getRowsJS()) {
      const [userId, history, held] = row as [string, string[], string[]];
      users.push({ userId, history: [...history], heldOut: new Set(held) });
    }
    if (users.length === 0) throw new Error(`dataset copy ${dir}: no user has both past and held-out interactions`);
    return users;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/**
 * Every item of the dataset copy's items.parquet with its number of training interactions (train.parquet), most
 * popular first, ties by item index; items nobody trained on count 0 (they are the longest of the long tail).
 */
export async function loadCatalogue(dir: string): Promise<Catalogue> {
  const file = (name: string) => path.join(dir, name);
  for (const f of ['train.parquet', 'items.parquet'])
    if (!existsSync(file(f))) throw new Error(`dataset copy ${dir} has no ${f}; drift scenarios need the catalogue`);
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const reader = await conn.runAndReadAll(
      `WITH counts AS (SELECT item_idx, count(*) AS n FROM read_parquet(${quote(file('train.parquet'))}) GROUP BY 1)
       SELECT i.item_id::VARCHAR, coalesce(c.n, 0)::DOUBLE
       FROM read_parquet(${quote(file('items.parquet'))}) i LEFT JOIN counts c USING (item_idx)
       ORDER BY 2 DESC, i.item_idx`,
    );
    const items: string[] = [];
    const counts: number[] = [];
    for (const row of reader.getRowsJS()) {
      const [id, n] = row as [string, number];
      items.push(id);
      counts.push(n);
    }
    if (items.length === 0) throw new Error(`dataset copy ${dir}: items.parquet has no items`);
    return { items, counts };
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/**
 * The held-out users replayed as a population of `size` pseudonymous users (`<id>~<k>`), each a copy of one real
 * user. Sticky assignment hashes the user id, so with a small test set (ML-100K has ~90 users with held-out items)
 * which few users land on a 5% canary would decide its click-through; spread over many ids, every version sees the
 * same mix of users and differences come from the model.
 */
export function expandPopulation(users: readonly SimUser[], size: number): SimUser[] {
  if (!Number.isInteger(size) || size < 1) throw new Error(`population must be a positive integer, got ${size}`);
  if (size <= users.length) return users.slice(0, size);
  return Array.from({ length: size }, (_, k) => {
    const u = users[k % users.length]!;
    return { ...u, userId: `${u.userId}~${Math.floor(k / users.length)}` };
  });
}
