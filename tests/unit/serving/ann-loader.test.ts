/**
 * The model loader's choice for a single model with an HNSW index: the index serves when it verifies and
 * $RECSYS_RETRIEVAL is not `exact`; any problem with it (tags, checksums, manifest, a file that does not fit) is
 * logged and the exact graph serves instead, so the version still loads. Real files (tests/unit/serving/ann-fixture.ts)
 * behind a fake object store, and a dataset copy already in the loader's cache.
 */
// First: onnxruntime's outputs come from Node's main realm, jest runs this file in another (see the module).
import '../../integration/jest-realm';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { TAGS } from '../../../lib/mlflow/tags';
import type { ObjectStore } from '../../../lib/object-store';
import { AnnRanker } from '../../../serving/ann-ranker';
import { loadServable, type LoaderDeps } from '../../../serving/model-loader';
import { servableFromTags, type ServableVersion } from '../../../serving/model-version';
import { OnnxRanker } from '../../../serving/onnx-ranker';
import { retrievalModeFromEnv } from '../../../serving/retrieval-mode';
import { buildHnsw } from '../../../serving/retrieval';
import { writeAnnFixture, type AnnFixture } from './ann-fixture';

let tmp: string;
let f: AnnFixture;
const K = 5;
const DATASET = { name: 'tiny', version: 'v1', uri: 's3://b/datasets/tiny/v1/' };

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-ann-loader-'));
  const files = path.join(tmp, 'files');
  await fs.mkdir(files);
  f = await writeAnnFixture(files, { topK: K });
  // The dataset copy the catalogue is read from, already complete in the cache (so the store is never asked).
  const data = path.join(tmp, 'cache', 'datasets', DATASET.name, DATASET.version);
  await fs.mkdir(data, { recursive: true });
  const conn = await (await DuckDBInstance.create(':memory:')).connect();
  await conn.run(
    `COPY (SELECT i::INTEGER AS item_idx, 'i' || i AS item_id FROM range(1, ${f.nItems + 1}) t(i))
     TO '${path.join(data, 'items.parquet')}' (FORMAT parquet)`,
  );
  await conn.run(
    `COPY (SELECT 1::INTEGER AS user_idx, (i % ${f.nItems} + 1)::INTEGER AS item_idx, i::BIGINT AS ts FROM range(50) t(i))
     TO '${path.join(data, 'train.parquet')}' (FORMAT parquet)`,
  );
  conn.closeSync();
  await fs.writeFile(path.join(data, '.complete'), '');
});
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

/** Serves s3://b/v/<name> from the fixture's files; `swap` serves another local file for a URI. */
function fakeStore(swap: Record<string, string> = {}): ObjectStore {
  return {
    downloadFile: async (uri: string, file: string) => {
      const from = swap[uri] ?? path.join(f.dir, uri.replace('s3://b/v/', ''));
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.copyFile(from, file);
    },
  } as unknown as ObjectStore;
}

function version(ann?: { uri: string; sha256: string }): ServableVersion {
  return {
    name: 'm',
    version: '1',
    aliases: [],
    kind: 'single',
    onnxUri: 's3://b/v/model.onnx',
    onnxSha256: f.sha.exact,
    topK: K,
    historyLen: f.historyLen,
    dataset: DATASET,
    ...(ann && { ann }),
  };
}

const annTags = () => ({ uri: 's3://b/v/ann.json', sha256: f.sha.manifest });

async function load(v: ServableVersion, deps: Partial<LoaderDeps> = {}) {
  const logged: string[] = [];
  // A fresh file cache per load: a verified file cached by one test must not hide another test's swap.
  const cacheDir = await fs.mkdtemp(path.join(tmp, 'cache-'));
  await fs.cp(path.join(tmp, 'cache', 'datasets'), path.join(cacheDir, 'datasets'), { recursive: true });
  const model = await loadServable(v, {
    mlflow: undefined as never,
    store: fakeStore(),
    cacheDir,
    limits: {},
    log: (m) => logged.push(m),
    ...deps,
  });
  return { model, logged };
}

test('a version with a verified index is served through it', async () => {
  const { model, logged } = await load(version(annTags()));
  try {
    expect(model.ranker).toBeInstanceOf(AnnRanker);
    expect(logged).toEqual([]);
    const out = await model.ranker.rank(Int32Array.of(3, 4), 2);
    expect(out.items).toHaveLength(K);
    expect(out.trace?.stages.map((s) => s.name)).toEqual(['user', 'hnsw']);
  } finally {
    await model.retire();
  }
});

test('RECSYS_RETRIEVAL=exact serves the exact graph and says nothing', async () => {
  const { model, logged } = await load(version(annTags()), { retrieval: 'exact' });
  expect(model.ranker).toBeInstanceOf(OnnxRanker);
  expect(logged).toEqual([]);
  await model.retire();
});

test('a version without an index is served by the exact graph', async () => {
  const { model, logged } = await load(version());
  expect(model.ranker).toBeInstanceOf(OnnxRanker);
  expect(logged).toEqual([]);
  await model.retire();
});

describe('any problem with the index: logged, and the exact graph serves', () => {
  const sha = (text: string) => createHash('sha256').update(text).digest('hex');

  async function fallsBack(v: ServableVersion, why: RegExp, swap: Record<string, string> = {}) {
    const { model, logged } = await load(v, { store: fakeStore(swap) });
    try {
      expect(model.ranker).toBeInstanceOf(OnnxRanker);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatch(/^models:\/m\/1: not serving its HNSW index s3:\/\/b\/v\/ann\.json \(/);
      expect(logged[0]).toMatch(/serving the exact top-K graph$/);
      expect(logged[0]).toMatch(why);
      // The exact graph answers.
      expect((await model.ranker.rank(Int32Array.of(3), 1)).items).toHaveLength(K);
    } finally {
      await model.retire();
    }
  }

  test('malformed tags', () =>
    fallsBack(version({ uri: 's3://b/v/ann.json', sha256: 'not-a-sha' }), /must be an s3:\/\/ URI and a hex sha256/));

  test("the manifest's checksum differs from the tag", () =>
    fallsBack(
      version({ uri: 's3://b/v/ann.json', sha256: sha('other') }),
      /checksum: sha256 of s3:\/\/b\/v\/ann\.json/,
    ));

  test('the index file differs from the one the manifest names', async () => {
    const other = path.join(tmp, 'other.usearch');
    await buildHnsw(f.E, f.dims, { connectivity: 4 }, 1).save(other);
    await fallsBack(version(annTags()), /checksum: sha256 of s3:\/\/b\/v\/items\.usearch/, {
      's3://b/v/items.usearch': other,
    });
  });

  test('a manifest whose dims do not fit the files', async () => {
    const bad = JSON.stringify({ ...f.manifest, dims: f.dims + 1 });
    await fs.writeFile(path.join(f.dir, 'ann-wide.json'), bad);
    await fallsBack(
      version({ uri: 's3://b/v/ann.json', sha256: sha(bad) }),
      /user graph: output 'user' has 8 columns, but the manifest's dims is 9/,
      { 's3://b/v/ann.json': path.join(f.dir, 'ann-wide.json') },
    );
  });

  test('a manifest that does not parse names the field and value', async () => {
    const bad = JSON.stringify({ ...f.manifest, metric: 'cos' });
    await fs.writeFile(path.join(f.dir, 'ann-cos.json'), bad);
    await fallsBack(version({ uri: 's3://b/v/ann.json', sha256: sha(bad) }), /metric: .*\(value: "cos"\)/, {
      's3://b/v/ann.json': path.join(f.dir, 'ann-cos.json'),
    });
  });
});

test('an aborted load is not turned into a fallback', async () => {
  const controller = new AbortController();
  controller.abort(new Error('deadline'));
  const logged: string[] = [];
  await expect(
    loadServable(
      version(annTags()),
      {
        mlflow: undefined as never,
        store: fakeStore(),
        cacheDir: path.join(tmp, 'cache'),
        limits: {},
        log: (m) => logged.push(m),
      },
      controller.signal,
    ),
  ).rejects.toThrow('deadline');
  expect(logged).toEqual([]);
});

test('the ann tags become the version’s ann, absent without them', () => {
  const base = {
    [TAGS.onnxUri]: 's3://b/v/model.onnx',
    [TAGS.onnxSha256]: f.sha.exact,
    [TAGS.topK]: '5',
    [TAGS.historyLen]: '4',
    [TAGS.datasetName]: 'tiny',
    [TAGS.datasetVersion]: 'v1',
    [TAGS.datasetUri]: DATASET.uri,
  };
  expect(servableFromTags('m', '1', base).ann).toBeUndefined();
  const sha = 'A'.repeat(64);
  expect(
    servableFromTags('m', '1', { ...base, [TAGS.annUri]: 's3://b/v/ann.json', [TAGS.annSha256]: sha }).ann,
  ).toEqual({ uri: 's3://b/v/ann.json', sha256: sha.toLowerCase() });
});

test('$RECSYS_RETRIEVAL: auto by default, exact, anything else an error naming the value', () => {
  expect(retrievalModeFromEnv({})).toBe('auto');
  expect(retrievalModeFromEnv({ RECSYS_RETRIEVAL: 'exact' })).toBe('exact');
  expect(retrievalModeFromEnv({ RECSYS_RETRIEVAL: ' auto ' })).toBe('auto');
  expect(() => retrievalModeFromEnv({ RECSYS_RETRIEVAL: 'hnsw' })).toThrow(
    '$RECSYS_RETRIEVAL must be one of auto, exact, got "hnsw"',
  );
});
