import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ApplicationFailure } from '@temporalio/common';
import { buildDatasetVersion } from '../../activities/etl';
import { config } from '../../lib/config';
import { writeSyntheticLog } from '../data/synthetic';
import { Manifest, manifestSources } from '../../lib/dataset/manifest';
import type { SourceSpecInput } from '../../lib/dataset/source';
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

/** Issue 12: what users did with the recommendations becomes training data, appended to the previous sources. */
describe('served feedback as a source', () => {
  const T = (s: number) => s * 1000;
  const feedbackLine = (user: string, item: string, event: string, ms: number) =>
    JSON.stringify({
      time_ms: ms + 40,
      request_id: `req-${user}-${ms}`,
      user_id: user,
      item_id: item,
      event,
      event_time_ms: ms,
      value: 0,
      model_name: 'two-tower-it',
      model_version: '1',
    });

  test('a RecBole export plus the feedback log: the old sources give the old version, the feedback a new one', async () => {
    const name = uniqueName('it-etl-feedback');
    const csv = path.join(dir, `${name}.csv`);
    await writeSyntheticLog(csv, { users: 60, items: 50, interactions: 1800, minPerUser: 20, seed: 12 });
    const [, ...rows] = (await fs.readFile(csv, 'utf8')).trimEnd().split('\n');
    const inter = path.join(dir, `${name}.inter`);
    await fs.writeFile(
      inter,
      ['user_id:token\titem_id:token\trating:float\ttimestamp:float', ...rows.map((r) => r.replaceAll(',', '\t'))].join(
        '\n',
      ) + '\n',
    );
    const interUri = await upload(inter, name);
    const config = { format: 'recbole' as const };
    const v1 = await buildDatasetVersion({ name, sources: [interUri], config });
    expect(v1).toMatchObject({ reused: false, sources: [interUri] });

    // Served after the data's last interaction: impressions, clicks on them, a dismissal (ms timestamps).
    const last = Math.max(...rows.map((r) => Number(r.split(',')[3])));
    const [u1, i1] = rows[0]!.split(',');
    const [u2, i2] = rows[1]!.split(',');
    const log = [
      feedbackLine(u1!, i2!, 'FEEDBACK_EVENT_IMPRESSION', T(last + 10)),
      feedbackLine(u1!, i2!, 'FEEDBACK_EVENT_CLICK', T(last + 20) + 999),
      feedbackLine(u2!, i1!, 'FEEDBACK_EVENT_IMPRESSION', T(last + 30)),
      feedbackLine(u2!, 'new-item-1', 'FEEDBACK_EVENT_CLICK', T(last + 40)),
      feedbackLine(u2!, i2!, 'FEEDBACK_EVENT_DISMISS', T(last + 50)),
    ];
    const feedbackFile = path.join(dir, `${name}-feedback.jsonl`);
    await fs.writeFile(feedbackFile, log.join('\n') + '\n');
    const feedback = {
      uri: await upload(feedbackFile, name),
      format: 'recsys-feedback' as const,
      rating: 5,
    };

    const v2 = await buildDatasetVersion({ name, sources: [interUri, feedback], config });
    expect(v2.reused).toBe(false);
    expect(v2.version).not.toBe(v1.version);
    expect(v2.counts.interactions).toBe(v1.counts.interactions + 2);
    expect(v2.counts.items).toBe(v1.counts.items + 1);
    expect(v2.sources).toEqual([interUri, feedback]);
    const m2 = Manifest.parse(await store.getJson(v2.manifestUri));
    expect(m2.sources).toEqual([
      expect.objectContaining({ uri: interUri, format: 'recbole', spec: interUri, records: rows.length }),
      expect.objectContaining({
        uri: feedback.uri,
        format: 'recsys-feedback',
        spec: feedback,
        records: 2,
        skipped: { FEEDBACK_EVENT_IMPRESSION: 2, FEEDBACK_EVENT_DISMISS: 1 },
      }),
    ]);
    // The clicks are the newest interactions, at their own time in seconds, with the source's fixed rating.
    expect(m2.stats.timestamp.max).toBe(last + 40);
    expect(m2.stats.ratingHistogram['5']).toBe(
      (Manifest.parse(await store.getJson(v1.manifestUri)).stats.ratingHistogram['5'] ?? 0) + 2,
    );

    // A retrain appends to the previous version's sources: those alone give the previous version back.
    const m1 = Manifest.parse(await store.getJson(v1.manifestUri));
    expect(await buildDatasetVersion({ name, sources: manifestSources(m1), config })).toMatchObject({
      version: v1.version,
      reused: true,
    });
    expect(await buildDatasetVersion({ name, sources: manifestSources(m2), config })).toMatchObject({
      version: v2.version,
      reused: true,
      sources: [interUri, feedback],
    });

    // Feedback that adds no interaction (impressions only) still makes a new version that lists it.
    const quiet = path.join(dir, `${name}-impressions.jsonl`);
    await fs.writeFile(quiet, [log[0], log[2]].join('\n') + '\n');
    const quietSpec = { uri: await upload(quiet, name), format: 'recsys-feedback' as const };
    const v3 = await buildDatasetVersion({ name, sources: [interUri, quietSpec], config });
    expect(v3.reused).toBe(false);
    expect(v3.version).not.toBe(v1.version);
    expect(v3.counts.interactions).toBe(v1.counts.interactions);
    expect(Manifest.parse(await store.getJson(v3.manifestUri)).sources[1]).toMatchObject({
      format: 'recsys-feedback',
      records: 0,
      skipped: { FEEDBACK_EVENT_IMPRESSION: 2 },
    });

    // Two specs that read the same rows (no purchase in the log): two versions, each listing its own sources.
    const withPurchases: SourceSpecInput = {
      ...feedback,
      events: ['FEEDBACK_EVENT_CLICK', 'FEEDBACK_EVENT_PURCHASE'],
    };
    const v4 = await buildDatasetVersion({ name, sources: [interUri, withPurchases], config });
    expect(v4.counts).toEqual(v2.counts);
    expect(v4.version).not.toBe(v2.version);
    expect(Manifest.parse(await store.getJson(v4.manifestUri)).sources[1]!.spec).toEqual(withPurchases);
    expect((await buildDatasetVersion({ name, sources: [interUri, feedback], config })).version).toBe(v2.version);
  });

  test('a bad source spec fails before anything is read, naming the source index, field and value', async () => {
    const name = uniqueName('it-etl-spec');
    const run = buildDatasetVersion({
      name,
      sources: ['s3://recsys/raw/x.inter', { uri: 's3://recsys/f.jsonl', format: 'recsys-feedback', rating: 9 }],
      config: { format: 'recbole' },
    });
    const err = (await run.catch((e: unknown) => e)) as ApplicationFailure;
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err.type).toBe('ConfigError');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain("config field 'sources[1].rating' is outside the ETL config's ratingRange [0, 5]");
  });
});
