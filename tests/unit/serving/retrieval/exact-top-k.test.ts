/**
 * Exact top-k, the reference the HNSW index is judged by: the same answer as scoring every item and sorting (dims
 * not a multiple of 4 exercise the unrolled loop's tail), ties to the lower item, and bad shapes rejected by name.
 */
import { exactTopK } from '../../../../serving/retrieval/exact-top-k';
import { gaussianRows } from '../../../data/embeddings';

/** Every item scored in one plain loop and sorted: score descending, then item ascending. */
function naive(items: Float32Array, dims: number, queries: Float32Array, k: number) {
  const n = items.length / dims;
  const rows: { keys: bigint[]; scores: number[] }[] = [];
  for (let q = 0; q < queries.length / dims; q++) {
    const all = Array.from({ length: n }, (_, j) => {
      let s = 0;
      for (let d = 0; d < dims; d++) s += items[j * dims + d]! * queries[q * dims + d]!;
      return { item: j + 1, s };
    }).sort((a, b) => b.s - a.s || a.item - b.item);
    rows.push({ keys: all.slice(0, k).map((x) => BigInt(x.item)), scores: all.slice(0, k).map((x) => x.s) });
  }
  return rows;
}

describe('exactTopK', () => {
  it.each([
    [13, 7],
    [64, 10],
    [3, 1],
  ])('matches a full sort (dims %i, k %i)', (dims, k) => {
    const items = gaussianRows(700, dims, dims);
    const queries = gaussianRows(25, dims, dims + 1);
    const got = exactTopK(items, dims, queries, k);
    expect(got.keys).toHaveLength(25 * k);
    naive(items, dims, queries, k).forEach((want, q) => {
      expect([...got.keys.subarray(q * k, (q + 1) * k)]).toEqual(want.keys);
      want.scores.forEach((s, j) => expect(got.scores[q * k + j]).toBeCloseTo(s, 4));
    });
  });

  it('returns every item, best first, when k is the catalogue size', () => {
    const items = Float32Array.of(1, 0, 3, 0, 2, 0, -1, 0);
    const got = exactTopK(items, 2, Float32Array.of(1, 5), 4);
    expect([...got.keys]).toEqual([2n, 3n, 1n, 4n]);
    expect([...got.scores]).toEqual([3, 2, 1, -1]);
  });

  it('breaks ties by the lower item, whatever the order they arrive in', () => {
    // Items 2, 4 and 5 tie for best; 1 and 3 tie below them.
    const items = Float32Array.of(1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0);
    const got = exactTopK(items, 2, Float32Array.of(1, 1), 4);
    expect([...got.keys]).toEqual([2n, 4n, 5n, 1n]);
  });

  it('rejects bad shapes naming the value', () => {
    const items = new Float32Array(12);
    expect(() => exactTopK(items, 4, new Float32Array(4), 4)).toThrow(
      'k must be an integer in [1, 3] (the number of items), got 4',
    );
    expect(() => exactTopK(items, 4, new Float32Array(4), 0)).toThrow('got 0');
    expect(() => exactTopK(items, 5, new Float32Array(5), 1)).toThrow('items: length 12 is not a multiple of dims 5');
    expect(() => exactTopK(items, 4, new Float32Array(6), 1)).toThrow('queries: length 6 is not a multiple of dims 4');
    expect(() => exactTopK(items, 0, new Float32Array(6), 1)).toThrow('dims must be a positive integer, got 0');
  });
});
