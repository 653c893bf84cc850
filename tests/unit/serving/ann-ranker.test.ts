/**
 * The HNSW ranker on a tiny real version (tests/unit/serving/ann-fixture.ts: a user graph in onnxruntime, a usearch
 * index): k answers best first whose scores are the inner products, the history window's items never among them
 * (but items older than the window may be, as in the exact graph), the same items as exact search on a catalogue this
 * small, each answer's trace naming the user graph and the index; and the checks that refuse files that do not fit.
 */
// First: onnxruntime's outputs come from Node's main realm, jest runs this file in another (see the module).
import '../../integration/jest-realm';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AnnManifest } from '../../../lib/ann-manifest';
import { AnnRanker, dropWindow, MASKED_SCORE } from '../../../serving/ann-ranker';
import { Catalog } from '../../../serving/catalog';
import { ModelLoadError } from '../../../serving/errors';
import { buildHnsw } from '../../../serving/retrieval';
import { exactScores, userGraph, writeAnnFixture, type AnnFixture } from './ann-fixture';

let dir: string;
let f: AnnFixture;
let ranker: AnnRanker;
const K = 5;

const catalogOf = (n: number) =>
  new Catalog(
    ['', ...Array.from({ length: n }, (_, i) => `i${i + 1}`)],
    Int32Array.from({ length: n }, (_, i) => i + 1),
    new Float32Array(n).fill(1 / n),
  );

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-ann-ranker-'));
  f = await writeAnnFixture(dir, { topK: K });
  ranker = await AnnRanker.open('m', f.files, f.manifest, { historyLen: f.historyLen, topK: K });
});
afterAll(async () => {
  await ranker.dispose();
  await fs.rm(dir, { recursive: true, force: true });
});

/** Brute force: the best k items by inner product, skipping `excluded`. */
function bruteForce(history: number[], excluded: Set<number>, k: number): { items: number[]; scores: number[] } {
  const scores = exactScores(f, history);
  const order = Array.from(scores.keys())
    .filter((j) => !excluded.has(j + 1))
    .sort((a, b) => scores[b]! - scores[a]! || a - b)
    .slice(0, k);
  return { items: order.map((j) => j + 1), scores: order.map((j) => scores[j]!) };
}

test.each([
  ['one item', [17]],
  ['a full window', [3, 150, 151, 299]],
])('%s: k items best first, none of the window, the inner products, the exact answer', async (_, history) => {
  const out = await ranker.rank(Int32Array.from(history), history.length);
  expect(out.items).toHaveLength(K);
  const items = [...out.items].map(Number);
  for (const item of history) expect(items).not.toContain(item);
  for (let j = 1; j < K; j++) expect(out.scores[j]!).toBeLessThanOrEqual(out.scores[j - 1]!);
  const expected = bruteForce(history, new Set(history), K);
  expect(items).toEqual(expected.items);
  out.scores.forEach((s, j) => expect(s).toBeCloseTo(expected.scores[j]!, 4));
});

test('an empty history (a zero user vector: every score ties at 0) still gets k distinct items', async () => {
  const out = await ranker.rank(new Int32Array(0), 0);
  expect(new Set(out.items).size).toBe(K);
  for (const s of out.scores) expect(s).toBeCloseTo(0, 6);
});

test("the history's own item would rank first: it is dropped, not just absent", async () => {
  // A history of the item with the largest norm: its user vector is that item's, whose best match is itself.
  const norm = (j: number) => Math.hypot(...f.E.subarray(j * f.dims, (j + 1) * f.dims));
  const top = Array.from({ length: f.nItems }, (_, j) => j).sort((a, b) => norm(b) - norm(a))[0]! + 1;
  expect(bruteForce([top], new Set(), K).items[0]).toBe(top);
  const out = await ranker.rank(Int32Array.of(top), 1);
  expect([...out.items].map(Number)).toEqual(bruteForce([top], new Set([top]), K).items);
});

test('only the window (the last L items) is dropped, as the exact graph masks it', async () => {
  // Six items with L = 4: items 40 and 41 are older than the window, so they may be returned.
  const history = [40, 41, 200, 201, 202, 203];
  const out = await ranker.rank(Int32Array.from(history), history.length);
  const window = history.slice(-f.historyLen);
  const expected = bruteForce(window, new Set(window), K).items;
  expect([...out.items].map(Number)).toEqual(expected);
});

test("each answer's trace names the user graph and the index with their checksums", async () => {
  const out = await ranker.rank(Int32Array.of(5), 1);
  expect(out.trace?.route).toBe('single');
  expect(out.trace?.stages.map((s) => [s.name, s.graphSha256])).toEqual([
    ['user', f.sha.user],
    ['hnsw', f.sha.index],
  ]);
  for (const s of out.trace!.stages) expect(s.ms).toBeGreaterThanOrEqual(0);
});

test('concurrent requests (batched together) each get their own answer', async () => {
  const histories = [[1], [2, 3], [100], [250, 251, 252], [7]];
  const outs = await Promise.all(histories.map((h) => ranker.rank(Int32Array.from(h), h.length)));
  outs.forEach((out, i) =>
    expect([...out.items].map(Number)).toEqual(bruteForce(histories[i]!, new Set(histories[i]), K).items),
  );
});

test("warm-up passes on the version's catalogue and fails on one of another size", async () => {
  await expect(ranker.warmUp('m', catalogOf(f.nItems))).resolves.toBeUndefined();
  await expect(ranker.warmUp('m', catalogOf(f.nItems + 1))).rejects.toThrow(
    `the HNSW index holds ${f.nItems} items, the catalogue ${f.nItems + 1}`,
  );
});

describe('open refuses files that do not fit, naming the mismatch', () => {
  const open = (manifest: AnnManifest, files = f.files, expected = { historyLen: f.historyLen, topK: K }) =>
    AnnRanker.open('models:/m/1', files, manifest, expected);

  test('a history length other than the tag', async () => {
    await expect(open(f.manifest, f.files, { historyLen: 7, topK: K })).rejects.toThrow(
      'HNSW manifest says historyLen 4, the tag recsys.onnx.history_len says 7',
    );
  });

  test('a user graph of another width than the manifest', async () => {
    const other = path.join(dir, 'user-wide.onnx');
    const wide = new Float32Array(f.nItems * (f.dims + 1));
    await fs.writeFile(other, userGraph(wide, f.dims + 1, f.historyLen));
    const err = await open(f.manifest, { ...f.files, user: other }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).stage).toBe('signature');
    expect((err as Error).message).toMatch(`output 'user' has ${f.dims + 1} columns, but the manifest's dims is 8`);
  });

  test('an index of another catalogue size', async () => {
    const other = path.join(dir, 'small.usearch');
    await buildHnsw(f.E.subarray(0, 100 * f.dims), f.dims, f.manifest.params, 1).save(other);
    await expect(open(f.manifest, { ...f.files, index: other })).rejects.toThrow(
      /HNSW index .*small\.usearch: size 100 items in the file, expected 300/,
    );
  });

  test('a file that is not an index', async () => {
    await expect(open(f.manifest, { ...f.files, index: f.files.user })).rejects.toThrow(/not a usearch index/);
  });

  test('top_k above the catalogue', async () => {
    await expect(open(f.manifest, f.files, { historyLen: f.historyLen, topK: f.nItems + 1 })).rejects.toThrow(
      `top_k ${f.nItems + 1} is more than the index's ${f.nItems} items`,
    );
  });
});

describe('dropWindow', () => {
  const keys = BigInt64Array.of(3n, 1n, 0n, 4n, 2n);
  const scores = Float32Array.of(9, 8, 7, 6, 5);

  test('skips the window (padding 0 is not an item) and unfilled slots, keeps the order', () => {
    const out = dropWindow(keys, scores, BigInt64Array.of(0n, 0n, 1n), 3);
    expect([...out.items]).toEqual([3n, 4n, 2n]);
    expect([...out.scores]).toEqual([9, 6, 5]);
  });

  test('fills a short answer with the window items at the masked score, like the exact graph', () => {
    const out = dropWindow(keys, scores, BigInt64Array.of(3n, 4n), 4);
    expect([...out.items]).toEqual([1n, 2n, 3n, 4n]);
    expect([...out.scores]).toEqual([8, 5, MASKED_SCORE, MASKED_SCORE]);
  });
});
