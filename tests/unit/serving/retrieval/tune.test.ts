/**
 * Tuning the search depth per version: on structured embeddings (clusters of power-law sizes, user-like queries)
 * the smallest depth with recall@10 >= 0.99 against exact search is found and set, and it holds on queries it was
 * not tuned on; on unstructured data with a depth list that cannot get there the answer is undefined and the index
 * keeps its depth (the version serves exact search).
 */
import { buildHnsw } from '../../../../serving/retrieval/hnsw';
import { exactTopK } from '../../../../serving/retrieval/exact-top-k';
import { recallAtK } from '../../../../serving/retrieval/recall';
import { tuneExpansion } from '../../../../serving/retrieval/tune';
import { clusteredItems, gaussianRows, userQueries } from '../../../data/embeddings';

describe('tuneExpansion', () => {
  it('finds the smallest depth with recall@10 >= 0.99 on ~5k structured vectors, and sets it', () => {
    const dims = 64;
    const items = clusteredItems({ items: 5000, dims, clusters: 70, seed: 21 });
    const queries = userQueries(items, dims, { queries: 300, seed: 22 });
    const index = buildHnsw(items, dims, {}, { threads: 1 });
    const tried: number[] = [];
    const result = tuneExpansion(index, items, queries, { onTry: (t) => tried.push(t.expansionSearch) });
    expect(result).toBeDefined();
    const { expansionSearch, recall, tried: curve } = result!;
    expect(recall).toBeGreaterThanOrEqual(0.99);
    expect(index.params.expansionSearch).toBe(expansionSearch);
    // The smallest: every depth tried before it fell short, and the depths were tried in order.
    expect(curve.slice(0, -1).every((t) => t.recall < 0.99)).toBe(true);
    expect(tried).toEqual(curve.map((t) => t.expansionSearch));
    expect(curve.at(-1)).toEqual({ expansionSearch, recall });
    // The measured recall is what the index now serves, and it holds on other users' vectors.
    expect(recallAtK(index.search(queries, 10).keys, exactTopK(items, dims, queries, 10).keys, 300, 10)).toBe(recall);
    const fresh = userQueries(items, dims, { queries: 300, seed: 23 });
    expect(recallAtK(index.search(fresh, 10).keys, exactTopK(items, dims, fresh, 10).keys, 300, 10)).toBeGreaterThan(
      0.98,
    );
  });

  it('returns undefined when no candidate reaches the target, and leaves the depth alone', () => {
    // Unstructured 64-d vectors, a sparse graph and a depth no deeper than k: far from 0.99.
    const dims = 64;
    const items = gaussianRows(2000, dims, 31);
    const queries = gaussianRows(100, dims, 32);
    const index = buildHnsw(items, dims, { connectivity: 4, expansionAdd: 16, expansionSearch: 77 }, { threads: 1 });
    const recalls: number[] = [];
    expect(
      tuneExpansion(index, items, queries, { candidates: [10], onTry: (t) => recalls.push(t.recall) }),
    ).toBeUndefined();
    expect(recalls).toHaveLength(1);
    expect(recalls[0]).toBeLessThan(0.9);
    expect(index.params.expansionSearch).toBe(77);
  });

  it('rejects a target no recall can reach and a candidate list out of order', () => {
    const items = gaussianRows(50, 8, 41);
    const index = buildHnsw(items, 8, {}, { threads: 1 });
    expect(() => tuneExpansion(index, items, items, { target: 1.5 })).toThrow(
      'target must be a recall in (0, 1], got 1.5',
    );
    expect(() => tuneExpansion(index, items, items, { candidates: [64, 32] })).toThrow(
      'candidates must be ascending positive integers, got 64, 32',
    );
    expect(() => tuneExpansion(index, items.subarray(0, 80), items)).toThrow('items: 10 rows, the index holds 50');
  });
});
