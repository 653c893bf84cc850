import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ApplicationFailure } from '@temporalio/common';
import { buildDatasetVersion } from '../../activities/etl';
import { config } from '../../lib/config';
import { writeSyntheticLog } from '../data/synthetic';
import { Manifest } from '../../lib/dataset/manifest';
import { objectStore } from '../../lib/object-store';
import { uniqueName } from './stack';

const store = objectStore();
let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-etl-it-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function upload(local: string, name: string): Promise<string> {
  const uri = `s3://${config().bucket}/raw/${name}/${path.basename(local)}`;
  await store.putFile(uri, local);
  return uri;
}

test('publishes a content-addressed version with the manifest, and reuses it on a re-run', async () => {
  const name = uniqueName('it-etl');
  const file = path.join(dir, 'synthetic.csv');
  await writeSyntheticLog(file, { users: 200, items: 120, interactions: 6000, minPerUser: 20, seed: 7 });
  const uri = await upload(file, name);
  const input = { name, sources: [uri], config: { format: 'csv' as const, columns: { rating: 'rating' } } };

  const first = await buildDatasetVersion(input);
  expect(first.reused).toBe(false);
  expect(first.uri).toBe(`s3://${config().bucket}/datasets/${name}/${first.version}/`);
  const objects = (await store.list(first.uri)).map((u) => u.slice(first.uri.length)).sort();
  expect(objects).toEqual([
    'items.parquet',
    'manifest.json',
    'test.parquet',
    'train.parquet',
    'users.parquet',
    'valid.parquet',
  ]);

  const manifest = Manifest.parse(await store.getJson(first.manifestUri));
  expect(manifest.counts.interactions).toBe(manifest.counts.train + manifest.counts.valid + manifest.counts.test);
  expect(manifest.counts.users).toBe(200);
  expect(manifest.split.validStart).toBeLessThan(manifest.split.testStart);
  expect(manifest.sources[0]).toMatchObject({ uri, records: manifest.counts.raw });

  const again = await buildDatasetVersion(input);
  expect(again).toMatchObject({ version: first.version, reused: true });
  // The manifest was not rewritten.
  expect(Manifest.parse(await store.getJson(first.manifestUri)).createdAt).toBe(manifest.createdAt);
});

test('a malformed file fails with file, line and field, and leaves no dataset version', async () => {
  const name = uniqueName('it-etl-bad');
  const good = path.join(dir, 'good.csv');
  await writeSyntheticLog(good, { users: 50, items: 40, interactions: 1500, minPerUser: 20, seed: 3 });
  const lines = (await fs.readFile(good, 'utf8')).trimEnd().split('\n');
  lines[10] = 'u1,i1,4'; // a broken line (line 11)
  const [u, i, , t] = lines[20]!.split(',');
  lines[20] = [u, i, '11', t].join(','); // an out-of-range rating (line 21)
  const bad = path.join(dir, 'bad.csv');
  await fs.writeFile(bad, lines.join('\n') + '\n');
  const uri = await upload(bad, name);

  const run = buildDatasetVersion({
    name,
    sources: [uri],
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  });
  await expect(run).rejects.toThrow(ApplicationFailure);
  const err = (await run.catch((e: unknown) => e)) as ApplicationFailure;
  expect(err.type).toBe('DataValidationError');
  expect(err.nonRetryable).toBe(true);
  expect(err.message).toContain(`${uri}:11: field '(line)' has 3 fields, expected 4`);
  expect(err.message).toContain(`${uri}:21: field 'rating' is out of range [1, 5] (value: "11")`);
  expect(await store.list(`s3://${config().bucket}/datasets/${name}/`)).toEqual([]);
});

/** The inputs of issue 11, item 12, as a new user brings them: nothing in them is dropped unseen. */
describe('inputs a new user brings', () => {
  async function synthetic(name: string, seed: number): Promise<string[]> {
    const file = path.join(dir, `${name}.csv`);
    await writeSyntheticLog(file, { users: 50, items: 40, interactions: 1500, minPerUser: 20, seed });
    return (await fs.readFile(file, 'utf8')).trimEnd().split('\n');
  }
  const failure = async (run: Promise<unknown>) => (await run.catch((e: unknown) => e)) as ApplicationFailure;

  test('a rating column under its conventional name is validated without a mapping', async () => {
    const name = uniqueName('it-etl-rating');
    const lines = await synthetic(name, 5);
    expect(lines[0]).toBe('user_id,item_id,rating,timestamp');
    const bad = (line: string, rating: string) => {
      const [u, i, , t] = line.split(',');
      return [u, i, rating, t].join(',');
    };
    lines[5] = bad(lines[5]!, '7');
    lines[6] = bad(lines[6]!, 'high');
    const file = path.join(dir, 'ratings.csv');
    await fs.writeFile(file, lines.join('\n') + '\n');
    const uri = await upload(file, name);

    const err = await failure(buildDatasetVersion({ name, sources: [uri], config: { format: 'csv' } }));
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err.type).toBe('DataValidationError');
    expect(err.message).toContain(`${uri}:6: field 'rating' is out of range [0, 5] (value: "7")`);
    expect(err.message).toContain(`${uri}:7: field 'rating' is not a number (value: "high")`);
    expect(await store.list(`s3://${config().bucket}/datasets/${name}/`)).toEqual([]);

    // Ignoring ratings is possible, but only by saying so.
    const ignored = await buildDatasetVersion({
      name,
      sources: [uri],
      config: { format: 'csv', columns: { rating: null } },
    });
    expect(ignored.counts.interactions).toBe(lines.length - 1);
  });

  test('invalid UTF-8 is an error naming the file and line', async () => {
    const name = uniqueName('it-etl-utf8');
    const lines = await synthetic(name, 6);
    const file = path.join(dir, 'latin1.csv');
    const [head, rest] = [lines.slice(0, 9).join('\n'), lines.slice(9).join('\n')];
    // Line 10 gets an item id with a Latin-1 "é" (0xe9), as an export in the wrong encoding has.
    await fs.writeFile(
      file,
      Buffer.concat([Buffer.from(`${head}\nu1,caf`), Buffer.from([0xe9]), Buffer.from(`,4,1600000000\n${rest}\n`)]),
    );
    const uri = await upload(file, name);
    const err = await failure(buildDatasetVersion({ name, sources: [uri], config: { format: 'csv' } }));
    expect(err.type).toBe('DataValidationError');
    expect(err.message).toContain(`${uri}:10: field '(line)' is not valid UTF-8 (byte 0xe9 at byte 7 of the line)`);
    expect(err.message).not.toContain('\uFFFD');
  });

  test('an Amazon reviews dump as .json.gz is read transparently; gzip under a plain name is an error saying so', async () => {
    const name = uniqueName('it-etl-gz');
    const [, ...lines] = await synthetic(name, 8);
    const reviews = lines.map((l) => {
      const [u, i, r, t] = l.split(',');
      return JSON.stringify({
        reviewerID: u,
        asin: i,
        overall: Number(r),
        unixReviewTime: Number(t),
        reviewText: 'ok',
      });
    });
    const gz = path.join(dir, 'Books_5.json.gz');
    await fs.writeFile(gz, gzipSync(reviews.join('\n') + '\n'));
    const version = await buildDatasetVersion({
      name,
      sources: [await upload(gz, name)],
      config: { format: 'amazon-jsonl', ratingRange: [1, 5] },
    });
    expect(version.counts.interactions).toBe(reviews.length);

    const plain = path.join(dir, 'Books_5.json');
    await fs.writeFile(plain, gzipSync(reviews.join('\n') + '\n'));
    const uri = await upload(plain, name);
    const err = await failure(buildDatasetVersion({ name, sources: [uri], config: { format: 'amazon-jsonl' } }));
    expect(err.type).toBe('DataValidationError');
    expect(err.message).toContain(`${uri}:1: field '(file)' is gzip-compressed (it starts with the bytes 1f 8b)`);
    // The message is text: no bytes of the compressed stream in it.
    expect(err.message).toMatch(/^[\x20-\x7e\n]*$/);
  });
});
