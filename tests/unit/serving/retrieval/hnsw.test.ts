/**
 * The HNSW index: scores are the items' inner products with the query (usearch's 1 - dot turned back), keys the
 * 1-based items; a depth set per version searches exactly as usearch would with that depth built in; the saved file
 * loads back to the same answers, and a file that does not fit the version fails naming the file and the mismatch.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Index, MetricKind, ScalarKind, type BatchMatches } from 'usearch';
import { DEFAULT_HNSW, HnswIndex, buildHnsw } from '../../../../serving/retrieval/hnsw';
import { readIndexHeader } from '../../../../serving/retrieval/index-file';
import { clusteredItems, userQueries } from '../../../data/embeddings';

const DIMS = 32;
const N = 2000;
const items = clusteredItems({ items: N, dims: DIMS, clusters: 30, seed: 11 });
const queries = userQueries(items, DIMS, { queries: 50, seed: 12 });
const params = { connectivity: 8, expansionAdd: 64, expansionSearch: 40 };
let index: HnswIndex;
let dir: string;
let file: string;

beforeAll(async () => {
  index = buildHnsw(items, DIMS, params, { threads: 1 });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-hnsw-'));
  file = path.join(dir, 'items.usearch');
  await index.save(file);
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

const dot = (item: bigint, q: number) => {
  let s = 0;
  for (let d = 0; d < DIMS; d++) s += items[(Number(item) - 1) * DIMS + d]! * queries[q * DIMS + d]!;
  return s;
};

describe('HnswIndex', () => {
  it('holds every item and returns 1-based keys with their inner products, best first', () => {
    expect(index.size).toBe(N);
    expect(index.dims).toBe(DIMS);
    const k = 10;
    const { keys, scores } = index.search(queries, k);
    for (let q = 0; q < 50; q++)
      for (let j = 0; j < k; j++) {
        const key = keys[q * k + j]!;
        expect(key >= 1n && key <= BigInt(N)).toBe(true);
        expect(scores[q * k + j]).toBeCloseTo(dot(key, q), 4);
        if (j > 0) expect(scores[q * k + j]).toBeLessThanOrEqual(scores[q * k + j - 1]!);
      }
  });

  it('answers one query as it answers the same query in a batch', () => {
    const batch = index.search(queries, 5);
    const one = index.search(queries.subarray(3 * DIMS, 4 * DIMS), 5);
    expect([...one.keys]).toEqual([...batch.keys.subarray(15, 20)]);
    expect([...one.scores]).toEqual([...batch.scores.subarray(15, 20)]);
  });

  it.each([10, 40, 200])('searches at depth %i exactly as usearch built with that depth does', (depth) => {
    const native = new Index({
      dimensions: DIMS,
      metric: MetricKind.IP,
      quantization: ScalarKind.F32,
      connectivity: params.connectivity,
      expansion_add: params.expansionAdd,
      expansion_search: depth,
      multi: false,
    });
    native.load(file);
    const want = native.search(queries, 10, 1) as unknown as BatchMatches;
    index.setExpansionSearch(depth);
    expect([...index.search(queries, 10).keys]).toEqual([...want.keys].map((k) => BigInt.asIntN(64, k)));
    index.setExpansionSearch(params.expansionSearch);
  });

  it('searches a graph built by angle by inner product too, and saves it as an inner-product index', async () => {
    const angular = buildHnsw(items, DIMS, params, { threads: 1, graph: 'angular' });
    angular.setExpansionSearch(N);
    const { keys, scores } = angular.search(queries, 10);
    for (let j = 0; j < 10; j++) expect(scores[j]).toBeCloseTo(dot(keys[j]!, 0), 4);
    // As deep as the catalogue, the search is exhaustive: the exact top 10 by inner product.
    const ranked = Array.from({ length: N }, (_, j) => BigInt(j + 1)).sort((a, b) => dot(b, 0) - dot(a, 0));
    expect([...keys.subarray(0, 10)]).toEqual(ranked.slice(0, 10));
    const saved = path.join(dir, 'angular.usearch');
    await angular.save(saved);
    expect(readIndexHeader(saved).metric).toBe('i');
    const loaded = await HnswIndex.load(saved, DIMS, { ...params, expansionSearch: N }, N);
    expect([...loaded.search(queries, 10).keys]).toEqual([...keys]);
  });

  it('loads back from its file with the same answers', async () => {
    const loaded = await HnswIndex.load(file, DIMS, params, N);
    expect(loaded.size).toBe(N);
    const a = index.search(queries, 10);
    const b = loaded.search(queries, 10);
    expect([...b.keys]).toEqual([...a.keys]);
    expect([...b.scores]).toEqual([...a.scores]);
  });

  it('refuses a file that does not fit, naming the file and what does not match', async () => {
    await expect(HnswIndex.load(file, 16, params)).rejects.toThrow(
      `HNSW index ${file}: dims ${DIMS} in the file, expected 16`,
    );
    await expect(HnswIndex.load(file, DIMS, params, N + 1)).rejects.toThrow(
      `HNSW index ${file}: size ${N} items in the file, expected ${N + 1}`,
    );
    await expect(HnswIndex.load(file, DIMS, { ...params, connectivity: 16 })).rejects.toThrow(
      `HNSW index ${file}: connectivity 8 in the file, expected 16`,
    );
    const junk = path.join(dir, 'junk.usearch');
    await fs.writeFile(junk, 'not an index at all');
    await expect(HnswIndex.load(junk, DIMS, params)).rejects.toThrow(`HNSW index ${junk}: `);
    await expect(HnswIndex.load(junk, DIMS, params)).rejects.toThrow('not a usearch index');
    const missing = path.join(dir, 'missing.usearch');
    await expect(HnswIndex.load(missing, DIMS, params)).rejects.toThrow(`HNSW index ${missing}: `);
    await expect(HnswIndex.load(missing, DIMS, params)).rejects.toThrow('ENOENT');
  });

  it('refuses an index built for another metric', async () => {
    const cosine = new Index({
      dimensions: DIMS,
      metric: MetricKind.Cos,
      quantization: ScalarKind.F32,
      connectivity: 8,
      expansion_add: 64,
      expansion_search: 40,
      multi: false,
    });
    cosine.add(BigUint64Array.of(1n, 2n), items.subarray(0, 2 * DIMS), 1);
    const other = path.join(dir, 'cosine.usearch');
    cosine.save(other);
    await expect(HnswIndex.load(other, DIMS, params)).rejects.toThrow(
      `HNSW index ${other}: metric 'c' in the file, expected 'i' (inner product)`,
    );
  });

  it('rejects bad input naming the value', () => {
    const bad = items.slice(0, 4 * DIMS);
    bad[2 * DIMS + 5] = NaN;
    expect(() => buildHnsw(bad, DIMS)).toThrow('items: row 2 column 5 is NaN');
    expect(() => buildHnsw(items, DIMS, { connectivity: 1 })).toThrow('HNSW params: connectivity');
    expect(() => buildHnsw(items.subarray(0, 10), DIMS)).toThrow('items: length 10 is not a multiple of dims 32');
    expect(() => index.search(queries, N + 1)).toThrow(`k must be an integer in [1, ${N}]`);
    expect(() => index.setExpansionSearch(0)).toThrow('expansionSearch must be a positive integer, got 0');
    expect(DEFAULT_HNSW).toEqual({ connectivity: 16, expansionAdd: 128, expansionSearch: 64 });
  });
});
