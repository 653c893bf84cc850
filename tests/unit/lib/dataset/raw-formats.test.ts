import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
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

/** Inputs a new user brings, read so that nothing in them is dropped unseen (issue 11, item 12). */
describe('no input silently dropped', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-raw-'));
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  const write = async (name: string, content: string | Buffer) => {
    const file = path.join(dir, name);
    await fs.writeFile(file, content);
    return file;
  };
  const readFile = async (file: string, format: RawFormat, mapping = defaults) => {
    const out: RawEntry[] = [];
    for await (const batch of readRaw(file, format, mapping)) out.push(...batch);
    return out;
  };

  test('a CSV column named rating is read without a mapping', async () => {
    const rows = await readAll('interactions.csv', 'csv');
    expect(rows[0]).toEqual({ line: 2, user: 'u1', item: 'item, with comma', rating: '4', timestamp: '1600000000' });
  });

  test('so are TSV, JSON lines and Parquet ones, and RecBole files without a rating column still read', async () => {
    const tsv = await write('logs.tsv', 'timestamp\tuser_id\trating\titem_id\n1600000000\tu1\thigh\ti1\n');
    expect(await readFile(tsv, 'tsv')).toEqual([
      { line: 2, user: 'u1', item: 'i1', rating: 'high', timestamp: '1600000000' },
    ]);
    const jsonl = await write('logs.jsonl', '{"user_id":"u1","item_id":"i1","timestamp":1600000000,"rating":7}\n');
    expect(await readFile(jsonl, 'jsonl')).toEqual([
      { line: 1, user: 'u1', item: 'i1', rating: '7', timestamp: '1600000000' },
    ]);
    const parquet = path.join(dir, 'conventional.parquet');
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    await conn.run(
      `COPY (SELECT 'u1' AS user_id, 'i1' AS item_id, 1600000000::BIGINT AS timestamp, 7.0::FLOAT AS rating)
         TO '${parquet}' (FORMAT parquet)`,
    );
    conn.closeSync();
    db.closeSync();
    expect(await readFile(parquet, 'parquet')).toEqual([
      { line: 1, user: 'u1', item: 'i1', rating: '7.0', timestamp: '1600000000' },
    ]);
    const implicit = await write('implicit.inter', 'user_id:token\titem_id:token\ttimestamp:float\n1\t2\t881250949\n');
    expect(await readFile(implicit, 'recbole')).toEqual([
      { line: 2, user: '1', item: '2', rating: undefined, timestamp: '881250949' },
    ]);
  });

  test('rating: null in the mapping is how ratings are ignored, explicitly', async () => {
    const mapping = ColumnMapping.parse({ rating: null });
    const rows = await readAll('interactions.csv', 'csv', mapping);
    expect(rows[0]).toMatchObject({ line: 2, rating: undefined });
    const dat = await readAll('ml-1m-ratings.dat', 'movielens-1m', mapping);
    expect(dat[0]).toMatchObject({ line: 1, rating: undefined });
  });

  test('invalid UTF-8 is a problem naming the line, never a U+FFFD in an id', async () => {
    const bytes = Buffer.concat([
      Buffer.from('user_id,item_id,rating,timestamp\nu1,i1,4,1600000000\nu2,caf'),
      Buffer.from([0xe9]), // Latin-1 "é"
      Buffer.from(',4,1600000100\nu3,i3,4,1600000200\n'),
    ]);
    const rows = await readFile(await write('latin1.csv', bytes), 'csv');
    expect(rows).toHaveLength(3);
    expect(rows[1]).toEqual({
      line: 3,
      field: '(line)',
      value: 'u2,caf',
      message: expect.stringContaining('is not valid UTF-8 (byte 0xe9 at byte 7 of the line)'),
    });
    expect(rows[2]).toMatchObject({ line: 4, item: 'i3' });
    expect(JSON.stringify(rows)).not.toContain('\uFFFD');

    const json = Buffer.concat([Buffer.from('{"user_id":"u"}\n'), Buffer.from([0xc3, 0x28])]);
    expect(await readFile(await write('bad.jsonl', json), 'jsonl')).toEqual([
      expect.objectContaining({ line: 1, user: 'u' }),
      expect.objectContaining({ line: 2, field: '(line)', message: expect.stringContaining('byte 0xc3 at byte 1') }),
    ]);
  });

  test('an unreadable header is the only problem reported', async () => {
    const header = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('u\0s\0e\0r\0\n')]); // UTF-16
    const rows = await readFile(await write('utf16.csv', header), 'csv');
    expect(rows).toEqual([
      expect.objectContaining({ line: 1, message: expect.stringContaining('is not valid UTF-8') }),
    ]);
  });

  test('a UTF-8 byte-order mark does not become part of the first column name', async () => {
    const file = await write('bom.csv', '\uFEFFuser_id,item_id,timestamp\nu1,i1,1600000000\n');
    expect(await readFile(file, 'csv')).toEqual([
      { line: 2, user: 'u1', item: 'i1', rating: undefined, timestamp: '1600000000' },
    ]);
  });

  test('gzip input named .gz is read transparently, across many chunks, with its line numbers', async () => {
    const amazon = await fs.readFile(fixture('amazon-2018.jsonl'));
    const gz = await write('reviews.json.gz', gzipSync(amazon));
    expect(await readFile(gz, 'amazon-jsonl')).toEqual(await readAll('amazon-2018.jsonl', 'amazon-jsonl'));

    const lines = Array.from({ length: 200_000 }, (_, i) => `u${i},i${i % 977},${i % 5},${1_600_000_000 + i}`);
    const big = await write('big.csv.gz', gzipSync(`user_id,item_id,rating,timestamp\n${lines.join('\n')}\n`));
    const rows = await readFile(big, 'csv');
    expect(rows).toHaveLength(200_000);
    expect(rows.filter(isProblem)).toEqual([]);
    expect(rows[123_456]).toEqual({
      line: 123_458,
      user: 'u123456',
      item: `i${123_456 % 977}`,
      rating: String(123_456 % 5),
      timestamp: String(1_600_000_000 + 123_456),
    });
  });

  test('a compressed file under a plain name is a problem that says so, with no binary in it', async () => {
    const csv = await fs.readFile(fixture('interactions.csv'));
    const rows = await readFile(await write('logs.csv', gzipSync(csv)), 'csv');
    expect(rows).toEqual([
      { line: 1, field: '(file)', value: '', message: expect.stringContaining('is gzip-compressed') },
    ]);
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(32, 7)]);
    expect(await readFile(await write('logs.jsonl', zstd), 'jsonl')).toEqual([
      expect.objectContaining({ field: '(file)', message: expect.stringContaining('is zstd-compressed') }),
    ]);
    expect(await readFile(await write('plain.csv.gz', csv), 'csv')).toEqual([
      expect.objectContaining({ field: '(file)', message: 'is named .gz but is not gzip-compressed' }),
    ]);
    expect(await readFile(await write('logs.parquet', gzipSync(csv)), 'parquet')).toEqual([
      expect.objectContaining({ field: '(file)', message: expect.stringContaining('is gzip-compressed') }),
    ]);
  });

  test('a truncated gzip file is a problem naming the file, after the lines it could read', async () => {
    const lines = Array.from({ length: 50_000 }, (_, i) => `u${i},i${i},${1_600_000_000 + i}`).join('\n');
    const whole = gzipSync(`user_id,item_id,timestamp\n${lines}\n`);
    const rows = await readFile(await write('cut.csv.gz', whole.subarray(0, whole.length - 100)), 'csv');
    const problems = rows.filter(isProblem);
    expect(problems).toEqual([
      expect.objectContaining({ field: '(file)', message: expect.stringContaining('is not a readable gzip stream') }),
    ]);
    expect(rows.length).toBeGreaterThan(1);
  });
});
