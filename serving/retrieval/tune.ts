/**
 * Chooses an HNSW index's search depth per version: the smallest expansionSearch whose recall@k against exact
 * search reaches the target on the version's own query vectors. The check that decides whether the index may serve.
 */
import { exactTopK } from './exact-top-k';
import type { HnswIndex } from './hnsw';
import { rowsOf } from './matrix';
import { recallAtK } from './recall';

export interface TuneOptions {
  /** Default 10. */
  k?: number;
  /** Minimum recall@k, in (0, 1]; default 0.99. */
  target?: number;
  /** expansionSearch values to try, ascending; default [16, 32, 64, 128, 256, 512, 1024]. */
  candidates?: number[];
  /** The exact top-k keys of `queries` (exactTopK's), when the caller has them already; computed otherwise. */
  exact?: BigInt64Array;
  /** Called after each try (a bench prints the curve, an activity logs it). */
  onTry?: (tried: { expansionSearch: number; recall: number }) => void;
}

export interface TuneResult {
  expansionSearch: number;
  recall: number;
  tried: { expansionSearch: number; recall: number }[];
}

export const DEFAULT_CANDIDATES = [16, 32, 64, 128, 256, 512, 1024];

/**
 * Smallest expansionSearch in `candidates` whose recall@k >= target on `queries` (row-major [b, dims]); sets it on
 * the index. undefined when none reaches the target (the index keeps its depth; the version then serves exact search).
 */
export function tuneExpansion(
  index: HnswIndex,
  items: Float32Array,
  queries: Float32Array,
  opts: TuneOptions = {},
): TuneResult | undefined {
  const { k = 10, target = 0.99, candidates = DEFAULT_CANDIDATES, onTry, exact: given } = opts;
  if (!(target > 0 && target <= 1)) throw new RangeError(`target must be a recall in (0, 1], got ${target}`);
  if (candidates.length === 0) throw new RangeError('candidates: empty');
  candidates.forEach((c, i) => {
    if (!Number.isInteger(c) || c < 1 || (i > 0 && c <= candidates[i - 1]!))
      throw new RangeError(`candidates must be ascending positive integers, got ${candidates.join(', ')}`);
  });
  const n = rowsOf(items, index.dims, 'items');
  if (n !== index.size) throw new RangeError(`items: ${n} rows, the index holds ${index.size}`);
  const b = rowsOf(queries, index.dims, 'queries');
  if (b < 1) throw new RangeError('queries: empty (no rows)');
  if (given && given.length !== b * k) throw new RangeError(`exact: length ${given.length}, expected ${b} x ${k}`);
  const exact = given ?? exactTopK(items, index.dims, queries, k).keys;
  const before = index.params.expansionSearch;
  const tried: TuneResult['tried'] = [];
  for (const expansionSearch of candidates) {
    index.setExpansionSearch(expansionSearch);
    const recall = recallAtK(index.search(queries, k).keys, exact, b, k);
    tried.push({ expansionSearch, recall });
    onTry?.({ expansionSearch, recall });
    if (recall >= target) return { expansionSearch, recall, tried };
  }
  index.setExpansionSearch(before);
  return undefined;
}
