/**
 * The index of validated versions (`_validated.json`) against the real object store, with two validations of one
 * dataset at once (issue 11, item 11): the index must list both. Each round is a fresh dataset with two versions built
 * by the real `etl` activity and validated together. Their statistics are computed beforehand (as a retry or a
 * validation under another config finds them), so the two validations run in step and their index updates meet: a
 * read-modify-write index loses one of the two entries in most rounds.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import type { EtlInput, ValidateDatasetInput, ValidationResult } from '../../activities/contracts';
import { validatedIndexUri, versionStatistics } from '../../activities/data-validation';
import { defaultDeps } from '../../activities/deps';
import { config } from '../../lib/config';
import type { DatasetVersion } from '../../lib/dataset/ref';
import { ValidationConfig } from '../../lib/dataset/validation-config';
import { objectStore } from '../../lib/object-store';
import { writeSyntheticLog } from '../data/synthetic';
import { uniqueName } from './stack';

const { etl, validateDataset } = createActivities();
const store = objectStore();
const ROUNDS = 12;
/** Every check off: this test is about the index, and tiny random versions would trip the drift checks. */
const ALL_OFF = Object.fromEntries(Object.keys(ValidationConfig.shape).map((k) => [k, { severity: 'off' }]));

let dir: string;
const names: string[] = [];
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-dv-index-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
  for (const name of names) await store.deletePrefix(`s3://${config().bucket}/datasets/${name}/`);
});

async function version(name: string, seed: number): Promise<DatasetVersion> {
  const local = path.join(dir, `${name}-${seed}.csv`);
  await writeSyntheticLog(local, { users: 60, items: 40, interactions: 1500, minPerUser: 20, seed });
  const uri = `s3://${config().bucket}/raw/${name}/${seed}.csv`;
  await store.putFile(uri, local);
  const input: EtlInput = { name, sources: [uri], config: { format: 'csv', ratingRange: [1, 5] } };
  return new MockActivityEnvironment().run<[EtlInput], DatasetVersion, typeof etl>(etl, input);
}

const validate = (dataset: DatasetVersion) =>
  new MockActivityEnvironment().run<[ValidateDatasetInput], ValidationResult, typeof validateDataset>(validateDataset, {
    dataset,
    config: ALL_OFF,
  });

async function indexed(name: string): Promise<string[]> {
  const index = (await store.getJson(validatedIndexUri(name))) as { versions: { version: string }[] } | undefined;
  return (index?.versions ?? []).map((v) => v.version);
}

test('two validations of one dataset at once both end up in the index, round after round', async () => {
  const rounds = await Promise.all(
    Array.from({ length: ROUNDS }, async (_, round) => {
      const name = uniqueName('it-dv-index');
      names.push(name);
      const versions = await Promise.all([version(name, 100 + 2 * round), version(name, 101 + 2 * round)]);
      for (const v of versions) await versionStatistics(defaultDeps(), v);
      return { name, versions };
    }),
  );
  for (const { name, versions } of rounds) {
    const results = await Promise.all(versions.map(validate));
    expect(results.map((r) => r.status)).toEqual(['pass', 'pass']);
    expect((await indexed(name)).sort()).toEqual(versions.map((v) => v.version).sort());
  }
  // Validating again (the stored verdicts) keeps both, and a later version sees one of them as its previous.
  const { name, versions } = rounds[0]!;
  await Promise.all(versions.map(validate));
  expect((await indexed(name)).sort()).toEqual(versions.map((v) => v.version).sort());
  const third = await version(name, 999);
  const result = await validate(third);
  expect(versions.map((v) => v.version)).toContain(result.previousVersion);
  expect(await indexed(name)).toHaveLength(3);
  expect((await indexed(name))[2]).toBe(third.version);
}, 60_000);
