/**
 * The local dataset cache treats a manifest as input: names that would leave the version's directory are refused,
 * every file is checked against its sha256 before the copy is marked complete, and concurrent fills of one version
 * end with one whole copy. The object store is faked (our own collaborator); tests/integration cover the real one.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localDataset } from '../../../../lib/dataset/cache';
import { EtlConfig } from '../../../../lib/dataset/etl-config';
import type { Manifest } from '../../../../lib/dataset/manifest';
import type { ObjectStore } from '../../../../lib/object-store';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const summary = { min: 0, p50: 0, mean: 0, p90: 0, max: 0 };
const PREFIX = 's3://recsys/datasets/shop/v1/';

function manifestWith(files: Manifest['files']): Manifest {
  return {
    schemaVersion: 1,
    name: 'shop',
    version: 'v1',
    uri: PREFIX,
    createdAt: '2026-01-01T00:00:00.000Z',
    config: EtlConfig.parse({ format: 'csv' }),
    sources: [],
    files,
    schema: {},
    counts: { raw: 1, duplicatesDropped: 0, interactions: 1, users: 1, items: 1, train: 1, valid: 0, test: 0 },
    split: { validStart: 0, testStart: 0, rule: '' },
    stats: {
      interactionsPerUser: summary,
      interactionsPerItem: summary,
      itemTop1pctShare: 0,
      itemTop10pctShare: 0,
      ratingHistogram: {},
      dailyVolume: summary,
      timestamp: { min: 0, max: 0 },
    },
  };
}

/** An in-memory store: objects by URI, downloads written in slow pieces so that concurrent fills overlap. */
class FakeStore {
  readonly objects = new Map<string, Buffer>();
  downloads = 0;
  getJson(uri: string): Promise<unknown> {
    const b = this.objects.get(uri);
    return Promise.resolve(b === undefined ? undefined : (JSON.parse(b.toString('utf8')) as unknown));
  }
  async downloadFile(uri: string, file: string): Promise<void> {
    const b = this.objects.get(uri);
    if (b === undefined) throw new Error(`no object ${uri}`);
    this.downloads += 1;
    const h = await fs.open(file, 'w');
    try {
      for (let at = 0; at < b.length; at += 1024) {
        await h.write(b.subarray(at, at + 1024));
        await new Promise((r) => setTimeout(r, 1));
      }
    } finally {
      await h.close();
    }
  }
}

let cacheDir: string;
let store: FakeStore;
const data = Buffer.alloc(16 * 1024, 'x');
const fill = () => localDataset(`${PREFIX}manifest.json`, store as unknown as ObjectStore, cacheDir);
const versionDir = () => path.join(cacheDir, 'datasets', 'shop', 'v1');
const publish = (files: Manifest['files']) =>
  store.objects.set(`${PREFIX}manifest.json`, Buffer.from(JSON.stringify(manifestWith(files))));

beforeEach(async () => {
  cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-cache-'));
  store = new FakeStore();
  store.objects.set(`${PREFIX}train.parquet`, data);
});
afterEach(() => fs.rm(cacheDir, { recursive: true, force: true }));

test('a verified copy is marked complete and reused', async () => {
  publish({ 'train.parquet': { uri: `${PREFIX}train.parquet`, rows: 1, sha256: sha256(data) } });
  const dir = await fill();
  expect(dir).toBe(versionDir());
  expect((await fs.readdir(dir)).sort()).toEqual(['.complete', 'manifest.json', 'train.parquet']);
  expect((await fs.readFile(path.join(dir, 'train.parquet'))).equals(data)).toBe(true);
  await fill();
  expect(store.downloads).toBe(1);
});

test.each([['../../../escaped.parquet'], ['/tmp/absolute.parquet'], ['sub/dir.parquet'], ['.complete'], ['..']])(
  'a manifest file name %j that is not a plain name is refused before anything is written',
  async (name) => {
    store.objects.set(`${PREFIX}${name}`, data);
    publish({ [name]: { uri: `${PREFIX}${name}`, rows: 1, sha256: sha256(data) } });
    const err = (await fill().catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(`dataset manifest ${PREFIX}manifest.json: dataset file name ${JSON.stringify(name)}`);
    expect(err.message).toContain('must be a plain file name');
    expect(store.downloads).toBe(0);
    await expect(fs.access(path.join(cacheDir, 'escaped.parquet'))).rejects.toThrow();
    await expect(fs.access(path.join(versionDir(), '.complete'))).rejects.toThrow();
  },
);

test('a file whose sha256 does not match the manifest is refused and the copy is not marked complete', async () => {
  const wrong = sha256('something else');
  publish({ 'train.parquet': { uri: `${PREFIX}train.parquet`, rows: 1, sha256: wrong } });
  const err = (await fill().catch((e: unknown) => e)) as Error;
  expect(err.message).toBe(
    `dataset shop@v1 file train.parquet: ${PREFIX}train.parquet has sha256 ${sha256(data)}, but the manifest says ` +
      `${wrong}; the copy is not used`,
  );
  // Neither the file under its name nor a temporary file nor the marker is left behind.
  expect(await fs.readdir(versionDir())).toEqual([]);
});

test('two fills of one version at once end with one whole, verified copy', async () => {
  store.objects.set(`${PREFIX}test.parquet`, Buffer.alloc(8 * 1024, 'y'));
  publish({
    'train.parquet': { uri: `${PREFIX}train.parquet`, rows: 1, sha256: sha256(data) },
    'test.parquet': { uri: `${PREFIX}test.parquet`, rows: 1, sha256: sha256(Buffer.alloc(8 * 1024, 'y')) },
  });
  const [a, b] = await Promise.all([fill(), fill()]);
  expect(a).toBe(b);
  expect((await fs.readdir(a)).sort()).toEqual(['.complete', 'manifest.json', 'test.parquet', 'train.parquet']);
  expect((await fs.readFile(path.join(a, 'train.parquet'))).equals(data)).toBe(true);
});
