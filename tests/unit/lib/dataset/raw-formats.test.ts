import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  ColumnMapping,
  isProblem,
  readRaw,
  splitCsvLine,
  type RawEntry,
  type RawFormat,
} from '../../../../lib/dataset/raw-formats';

const fixture = (name: string) => path.join(__dirname, '..', '..', '..', 'fixtures', 'raw', name);
const defaults = ColumnMapping.parse({});

async function readAll(file: string, format: RawFormat, mapping = defaults): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  for await (const batch of readRaw(fixture(file), format, mapping)) out.push(...batch);
  return out;
}

describe('raw format readers', () => {
  test('MovieLens-1M ratings.dat (UserID::MovieID::Rating::Timestamp)', async () => {
    const rows = await readAll('ml-1m-ratings.dat', 'movielens-1m');
    expect(rows).toHaveLength(4);
    expect(rows[0]).toEqual({ line: 1, user: '1', item: '1193', rating: '5', timestamp: '978300760' });
    expect(rows[3]).toEqual({ line: 4, user: '2', item: '3068', rating: '4', timestamp: '978299000' });
  });

  test('MovieLens-100K u.data (tab-separated, no header)', async () => {
    const rows = await readAll('ml-100k-u.data', 'movielens-100k');
    expect(rows[2]).toEqual({ line: 3, user: '22', item: '377', rating: '1', timestamp: '878887116' });
  });

  test('RecBole atomic .inter with a typed header', async () => {
    const rows = await readAll('recbole.inter', 'recbole');
    expect(rows).toEqual([
      { line: 2, user: '196', item: '242', rating: '3', timestamp: '881250949' },
      { line: 3, user: '186', item: '302', rating: '3', timestamp: '891717742' },
    ]);
  });

  test('Amazon reviews JSON lines, 2018 and 2023 layouts (ms normalised to s)', async () => {
    const old = await readAll('amazon-2018.jsonl', 'amazon-jsonl');
    expect(old[0]).toEqual({
      line: 1,
      user: 'A1AAAAAAAAAAAA',
      item: 'B000000001',
      rating: '5',
      timestamp: '1446768000',
    });
    const recent = await readAll('amazon-2023.jsonl', 'amazon-jsonl');
    expect(recent[0]).toEqual({ line: 1, user: 'AGUSER1', item: 'B0P1', rating: '4', timestamp: '1588687728' });
  });

  test('CSV with a header and quoted fields', async () => {
    const rows = await readAll('interactions.csv', 'csv', { ...defaults, rating: 'rating' });
    expect(rows[0]).toEqual({ line: 2, user: 'u1', item: 'item, with comma', rating: '4', timestamp: '1600000000' });
  });

  test('a line with the wrong number of fields is a problem naming its line', async () => {
    const rows = await readAll('malformed.csv', 'csv', { ...defaults, rating: 'rating' });
    const problems = rows.filter(isProblem);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({
      line: 3,
      field: '(line)',
      message: expect.stringContaining('has 3 fields, expected 4'),
    });
  });

  test('a broken JSON line is a problem naming its line', async () => {
    const rows = await readAll('interactions.jsonl', 'jsonl');
    expect(isProblem(rows[1]!)).toBe(true);
    expect(rows[1]).toMatchObject({ line: 2, message: expect.stringContaining('is not valid JSON') });
  });

  test('a missing mapped column is reported against the header', async () => {
    const rows = await readAll('interactions.csv', 'csv', { ...defaults, user: 'customer' });
    expect(rows).toEqual([
      expect.objectContaining({ line: 1, field: 'customer', message: 'column is missing from the header' }),
    ]);
  });

  test('splitCsvLine handles escaped quotes and multi-character delimiters', () => {
    expect(splitCsvLine('a,"b ""c""",d', ',')).toEqual(['a', 'b "c"', 'd']);
    expect(splitCsvLine('1::2::3', '::')).toEqual(['1', '2', '3']);
    expect(() => splitCsvLine('a,"b', ',')).toThrow('unterminated');
  });
});

describe('Parquet', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-parquet-'));
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    await conn.run(
      `COPY (SELECT * FROM (VALUES ('u1', 'i1', 1600000000::BIGINT, 4.0::FLOAT), ('u2', 'i2', 1600000100, NULL))
         AS t(uid, iid, ts, stars)) TO '${path.join(dir, 'logs.parquet')}' (FORMAT parquet)`,
    );
    conn.closeSync();
    db.closeSync();
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  test('rows come with their 1-based row number and mapped columns', async () => {
    const mapping = { user: 'uid', item: 'iid', timestamp: 'ts', rating: 'stars' };
    const rows: RawEntry[] = [];
    for await (const batch of readRaw(path.join(dir, 'logs.parquet'), 'parquet', mapping)) rows.push(...batch);
    expect(rows).toEqual([
      { line: 1, user: 'u1', item: 'i1', timestamp: '1600000000', rating: '4.0' },
      { line: 2, user: 'u2', item: 'i2', timestamp: '1600000100', rating: undefined },
    ]);
  });

  test('a mapped column missing from the schema is reported', async () => {
    const rows: RawEntry[] = [];
    for await (const batch of readRaw(path.join(dir, 'logs.parquet'), 'parquet', { ...defaults, user: 'uid' }))
      rows.push(...batch);
    expect(rows).toEqual([
      expect.objectContaining({ field: 'item_id', message: 'column is missing from the Parquet schema' }),
    ]);
  });
});
