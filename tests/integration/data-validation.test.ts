/**
 * Data validation against the real object store: versions built by the real `etl` activity from synthetic logs of
 * one world; a second version with a planted anomaly (a day with half the volume, a broken item-id mapping) fails
 * naming it and is never used as the reference, while a benign second version (more days) passes or only warns.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import type { EtlInput, ValidateDatasetInput, ValidationResult } from '../../activities/contracts';
import { validatedIndexUri } from '../../activities/data-validation';
import type { DatasetVersion } from '../../lib/dataset/ref';
import { config } from '../../lib/config';
import { writeSyntheticLog } from '../data/synthetic';
import { DatasetStatistics } from '../../lib/dataset/statistics';
import { objectStore } from '../../lib/object-store';
import { uniqueName } from './stack';

const { etl, validateDataset } = createActivities();

const store = objectStore();
const DAY = 86_400;
/** Midnight UTC (2023-11-14), so that batches cover whole days. */
const START = 1_699_920_000;
/**
 * Enough users that daily volume is steady (days 7-13 within ~5% of each other) rather than bursty: a half-volume day
 * then stands out from natural variation, as it would in a production log. ~120k rows: a few seconds of ETL.
 */
const WORLD = { users: 4000, items: 400, minPerUser: 20, seed: 23 };
const FIRST = { ...WORLD, interactions: 80_000, startTime: START, spanDays: 14 };
const LATER = { ...WORLD, batch: 1, interactions: 40_000, minPerUser: 1, startTime: START + 14 * DAY, spanDays: 7 };
/** The day of the later batch that loses half its rows in the planted anomaly. */
const HALVED_DAY = START + 17 * DAY;

let dir: string;
let name: string;
let v1: DatasetVersion;
let firstCsv: string;
let laterCsv: string;

async function upload(file: string, content: string): Promise<string> {
  const local = path.join(dir, file);
  await fs.writeFile(local, content);
  const uri = `s3://${config().bucket}/raw/${name}/${file}`;
  await store.putFile(uri, local);
  return uri;
}

async function version(...sources: string[]): Promise<DatasetVersion> {
  const input: EtlInput = {
    name,
    sources,
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  };
  return new MockActivityEnvironment().run<[EtlInput], DatasetVersion, typeof etl>(etl, input);
}

const validate = (dataset: DatasetVersion) =>
  new MockActivityEnvironment().run<[ValidateDatasetInput], ValidationResult, typeof validateDataset>(validateDataset, {
    dataset,
  });

async function indexed(): Promise<string[]> {
  const index = (await store.getJson(validatedIndexUri(name))) as { versions: { version: string }[] } | undefined;
  return (index?.versions ?? []).map((v) => v.version);
}

/** Applies `f` to the data lines of a CSV log (header kept). */
function mapLines(csv: string, f: (line: string, i: number) => string | undefined): string {
  const [header, ...lines] = csv.trimEnd().split('\n');
  const out = lines.map(f).filter((l): l is string => l !== undefined);
  return [header, ...out].join('\n') + '\n';
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-dv-it-'));
  name = uniqueName('it-dv');
  await writeSyntheticLog(path.join(dir, 'first.csv'), FIRST);
  await writeSyntheticLog(path.join(dir, 'later.csv'), LATER);
  firstCsv = await fs.readFile(path.join(dir, 'first.csv'), 'utf8');
  laterCsv = await fs.readFile(path.join(dir, 'later.csv'), 'utf8');
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

test('the first version passes the within-version checks, stores statistics and report, and is indexed', async () => {
  v1 = await version(await upload('first.csv', firstCsv));
  const result = await validate(v1);
  expect(result).toMatchObject({ status: 'pass', anomalies: [], reused: false, reportUri: `${v1.uri}validation.json` });
  expect(result.previousVersion).toBeUndefined();
  expect(result.summary).toBe('PASS: no anomalies (first version)');
  const stats = DatasetStatistics.parse(await store.getJson(`${v1.uri}statistics.json`));
  expect(stats.rows).toBe(v1.counts.interactions);
  expect(stats.dailyVolume.counts).toHaveLength(14);
  expect(await store.getBytes(`${v1.uri}validation.txt`)).toBeDefined();
  expect(await indexed()).toEqual([v1.version]);

  const again = await validate(v1);
  expect(again).toEqual({ ...result, reused: true });
  expect(await indexed()).toEqual([v1.version]);
});

function expectFailure(result: ValidationResult, check: string, messagePart: string): void {
  expect(result.status).toBe('fail');
  expect(result.previousVersion).toBe(v1.version);
  const named = result.anomalies.filter((a) => a.check === check && a.severity === 'fail');
  expect(named.map((a) => a.message)).toEqual(expect.arrayContaining([expect.stringContaining(messagePart)]));
  expect(result.summary).toMatch(new RegExp(`^FAIL: \\d+ anomal(y|ies) \\([^)]*${check}`));
}

test('a later day with half the volume fails, naming the day, and is never the previous version', async () => {
  let kept = 0;
  const halved = mapLines(laterCsv, (line) => {
    const ts = Number(line.split(',')[3]);
    if (ts < HALVED_DAY || ts >= HALVED_DAY + DAY) return line;
    return kept++ % 2 === 0 ? line : undefined;
  });
  const v2 = await version(await upload('first.csv', firstCsv), await upload('later-halved.csv', halved));
  const result = await validate(v2);
  const day = new Date(HALVED_DAY * 1000).toISOString().slice(0, 10);
  expectFailure(result, 'dailyVolumeDip', `daily volume on ${day} is`);
  const report = (await store.getJson(result.reportUri)) as { report: { status: string } };
  expect(report.report.status).toBe('fail');
  const text = (await store.getBytes(`${v2.uri}validation.txt`))!.toString('utf8');
  expect(text).toContain(`[fail] dailyVolumeDip: daily volume on ${day} is`);
  expect(await indexed()).toEqual([v1.version]);
  // Validating the failed version again returns the stored verdict and still keeps it out of the index.
  expect(await validate(v2)).toEqual({ ...result, reused: true });
  expect(await indexed()).toEqual([v1.version]);
});

const offByOne = (csv: string) =>
  mapLines(csv, (line) => {
    const [u, item, r, t] = line.split(',');
    return [u, `i${Number(item!.slice(1)) + 1}`, r, t].join(',');
  });

test('a broken item-id mapping (ids off by one) fails on the item popularity shift', async () => {
  const v2 = await version(
    await upload('first-mapped.csv', offByOne(firstCsv)),
    await upload('later-mapped.csv', offByOne(laterCsv)),
  );
  const result = await validate(v2);
  expectFailure(result, 'popularityShift', 'item popularity shifted from version');
  expect(await indexed()).toEqual([v1.version]);
});

test('a broken mapping only in the new week (old rows intact) fails on the new rows', async () => {
  const v2 = await version(await upload('first.csv', firstCsv), await upload('later-mapped.csv', offByOne(laterCsv)));
  const result = await validate(v2);
  expectFailure(result, 'popularityShift', 'item popularity in the 40,000 interactions newer than version');
  expect(await indexed()).toEqual([v1.version]);
});

test('a benign later version (same world, one more week) passes or only warns, compared with the first', async () => {
  const v2 = await version(await upload('first.csv', firstCsv), await upload('later.csv', laterCsv));
  const result = await validate(v2);
  expect(result.anomalies.filter((a) => a.severity === 'fail')).toEqual([]);
  expect(['pass', 'warn']).toContain(result.status);
  expect(result.summary).toMatch(/^(PASS|WARN): /);
  expect(result.previousVersion).toBe(v1.version);
  expect(await indexed()).toEqual([v1.version, v2.version]);
});

test('an invalid config is a non-retryable ConfigError naming the field and value', async () => {
  const run = new MockActivityEnvironment().run<[ValidateDatasetInput], ValidationResult, typeof validateDataset>(
    validateDataset,
    { dataset: v1, config: { popularityShift: { threshold: 2 } } },
  );
  const err = (await run.catch((e: unknown) => e)) as ApplicationFailure;
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect(err.type).toBe('ConfigError');
  expect(err.nonRetryable).toBe(true);
  expect(err.message).toContain("config field 'validation.popularityShift.threshold'");
  expect(err.message).toContain('(value: 2)');
});
