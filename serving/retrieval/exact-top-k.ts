/**
 * Exact top-k by inner product, brute force: the reference the HNSW index is checked against and the fallback when
 * it may not serve. Plain loops over the float32 rows (four accumulators, so the multiply-adds pipeline) and a
 * k-sized min-heap per query, so the cost is n x dims multiply-adds plus O(n log k) at worst.
 */
import { checkK, rowsOf, type TopKResult } from './matrix';

/**
 * items row-major [n, dims] (row j is item j + 1), queries row-major [b, dims] -> per query the best k items (keys
 * 1-based, scores = inner products, best first; equal scores: the lower item first). Row-major [b * k].
 */
export function exactTopK(items: Float32Array, dims: number, queries: Float32Array, k: number): TopKResult {
  const n = rowsOf(items, dims, 'items');
  const b = rowsOf(queries, dims, 'queries');
  checkK(k, n);
  const keys = new BigInt64Array(b * k);
  const scores = new Float32Array(b * k);
  // The heap: root = the worst of the best k so far. Items arrive in ascending order, so a later item with the
  // root's score is worse (higher key) and only a strictly higher score enters.
  const heapScore = new Float64Array(k);
  const heapRow = new Int32Array(k);
  const tail = dims - (dims % 4);
  for (let q = 0; q < b; q++) {
    const qo = q * dims;
    let size = 0;
    for (let row = 0, io = 0; row < n; row++, io += dims) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let d = 0;
      for (; d < tail; d += 4) {
        s0 += items[io + d]! * queries[qo + d]!;
        s1 += items[io + d + 1]! * queries[qo + d + 1]!;
        s2 += items[io + d + 2]! * queries[qo + d + 2]!;
        s3 += items[io + d + 3]! * queries[qo + d + 3]!;
      }
      for (; d < dims; d++) s0 += items[io + d]! * queries[qo + d]!;
      const s = s0 + s1 + (s2 + s3);
      if (size < k) {
        siftUp(heapScore, heapRow, size++, s, row);
      } else if (s > heapScore[0]!) {
        siftDown(heapScore, heapRow, size, s, row);
      }
    }
    // Pop the worst first into the row's tail: best first in the output.
    for (let out = q * k + k - 1; size > 0; out--) {
      keys[out] = BigInt(heapRow[0]! + 1);
      scores[out] = heapScore[0]!;
      size--;
      if (size > 0) siftDown(heapScore, heapRow, size, heapScore[size]!, heapRow[size]!);
    }
  }
  return { keys, scores };
}

/** a ranks below b: a lower score, or the same score and a later item. */
function worse(sa: number, ra: number, sb: number, rb: number): boolean {
  return sa < sb || (sa === sb && ra > rb);
}

/** Inserts (s, row) at slot `at` (= the current size) and moves it up to its place. */
function siftUp(score: Float64Array, rows: Int32Array, at: number, s: number, row: number): void {
  let i = at;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!worse(s, row, score[parent]!, rows[parent]!)) break;
    score[i] = score[parent]!;
    rows[i] = rows[parent]!;
    i = parent;
  }
  score[i] = s;
  rows[i] = row;
}

/** Replaces the root by (s, row) and moves it down to its place in a heap of `size`. */
function siftDown(score: Float64Array, rows: Int32Array, size: number, s: number, row: number): void {
  let i = 0;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= size) break;
    const right = left + 1;
    const child = right < size && worse(score[right]!, rows[right]!, score[left]!, rows[left]!) ? right : left;
    if (!worse(score[child]!, rows[child]!, s, row)) break;
    score[i] = score[child]!;
    rows[i] = rows[child]!;
    i = child;
  }
  score[i] = s;
  rows[i] = row;
}
