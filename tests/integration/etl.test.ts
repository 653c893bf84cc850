import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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
