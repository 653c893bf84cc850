import { Catalog } from '../../../serving/catalog';
import { ItemMarks } from '../../../serving/item-marks';
import { outputProblem } from '../../../serving/onnx-ranker';
import { pickFromModel, pickPopular } from '../../../serving/ranking';

const catalog = new Catalog(
  ['', 'a', 'b', 'c', 'd', 'e'],
  Int32Array.of(3, 1, 5, 2, 4),
  Float32Array.of(0.4, 0.3, 0.15, 0.1, 0.05),
);

describe('ItemMarks', () => {
  test('begin() empties the set without clearing it item by item', () => {
    const m = new ItemMarks(5);
    m.begin();
    m.mark(2);
    m.mark(5);
    expect([0, 1, 2, 3, 4, 5].map((i) => m.has(i))).toEqual([false, false, true, false, false, true]);
    m.begin();
    expect([0, 1, 2, 3, 4, 5].some((i) => m.has(i))).toBe(false);
  });

  test('ignores the padding index and indices outside the catalogue', () => {
    const m = new ItemMarks(3);
    m.begin();
    m.mark(0);
    m.mark(4);
    m.mark(-1);
    expect([m.has(0), m.has(4), m.has(-1)]).toEqual([false, false, false]);
  });
});

describe('pickFromModel', () => {
  const items = BigInt64Array.of(4n, 2n, 5n, 1n, 3n);
  const scores = Float32Array.of(0.9, 0.8, 0.7, 0.6, 0.5);

  test('keeps the model order, skips excluded items and stops at k', () => {
    const ex = new ItemMarks(5);
    ex.begin();
    ex.mark(2);
    ex.mark(1);
    const out = pickFromModel(items, scores, 2, ex, catalog);
    expect(out.map((i) => i.item_id)).toEqual(['d', 'e']);
    expect(out[0]!.score).toBeCloseTo(0.9);
    expect(out[1]!.score).toBeCloseTo(0.7);
  });

  test('returns fewer than k when exclusions remove candidates', () => {
    const ex = new ItemMarks(5);
    ex.begin();
    for (const i of [1, 2, 3]) ex.mark(i);
    expect(pickFromModel(items, scores, 5, ex, catalog).map((i) => i.item_id)).toEqual(['d', 'e']);
  });

  test('skips indices the catalogue cannot map', () => {
    const ex = new ItemMarks(5);
    ex.begin();
    const out = pickFromModel(BigInt64Array.of(9n, 0n, 3n), Float32Array.of(3, 2, 1), 3, ex, catalog);
    expect(out.map((i) => i.item_id)).toEqual(['c']);
  });
});

describe('pickPopular', () => {
  test('most popular first with their shares, excluded items skipped', () => {
    const ex = new ItemMarks(5);
    ex.begin();
    ex.mark(1);
    const out = pickPopular(3, ex, catalog);
    expect(out.map((i) => i.item_id)).toEqual(['c', 'e', 'b']);
    expect(out.map((i) => i.score)).toEqual([0.4, 0.15, 0.1].map((s) => Math.fround(s)));
  });
});

describe('outputProblem (warm-up checks of a graph output)', () => {
  const ok = { scores: Float32Array.of(3, 2, 1), items: BigInt64Array.of(2n, 5n, 1n) };
  test('accepts K distinct in-range items with sorted finite scores', () => {
    expect(outputProblem(ok, 3, 5)).toBeUndefined();
  });
  test.each([
    ['wrong K', ok, 4, 'expected 4 scores and items, got 3 and 3'],
    ['out of range', { ...ok, items: BigInt64Array.of(2n, 6n, 1n) }, 3, 'item index 6 at rank 1 is outside 1..5'],
    ['padding', { ...ok, items: BigInt64Array.of(0n, 5n, 1n) }, 3, 'item index 0 at rank 0 is outside 1..5'],
    ['duplicates', { ...ok, items: BigInt64Array.of(2n, 2n, 1n) }, 3, 'item index 2 appears twice'],
    ['NaN', { ...ok, scores: Float32Array.of(3, NaN, 1) }, 3, 'score at rank 1 is NaN'],
    ['unsorted', { ...ok, scores: Float32Array.of(1, 2, 3) }, 3, 'scores are not sorted best first (rank 1)'],
  ])('rejects %s', (_, out, k, message) => {
    expect(outputProblem(out, k, 5)).toBe(message);
  });
});
