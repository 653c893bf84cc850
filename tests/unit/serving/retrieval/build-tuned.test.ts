/**
 * Building the index a version may serve: an inner-product graph where it reaches recall@10 >= 0.99, and an angular
 * graph where the inner-product one cannot (items sharing a common direction, users not along it, as a trained
 * two-tower's: the inner-product graph's hubs leave most items unreachable, whatever the depth).
 */
import { buildTunedHnsw } from '../../../../serving/retrieval/build-tuned';
import { exactTopK } from '../../../../serving/retrieval/exact-top-k';
import { recallAtK } from '../../../../serving/retrieval/recall';
import { clusteredItems, userQueries } from '../../../data/embeddings';

const DIMS = 64;
const towerLike = clusteredItems({ items: 3000, dims: DIMS, clusters: 55, seed: 21, common: 1.5 });
const towerUsers = userQueries(towerLike, DIMS, { queries: 300, seed: 22, alongMean: 0 });

describe('buildTunedHnsw', () => {
  it('falls back to an angular graph when the inner-product graph cannot reach the target', () => {
    const built: string[] = [];
    const { chosen, attempts } = buildTunedHnsw(towerLike, DIMS, towerUsers, {
      threads: 1,
      onBuilt: (b) => built.push(b.graph),
    });
    expect(built).toEqual(['ip', 'angular']);
    expect(attempts.map((a) => a.graph)).toEqual(['ip', 'angular']);
    // The inner-product graph plateaus far below the target, even 1024 deep.
    expect(attempts[0]!.tried).toHaveLength(7);
    expect(Math.max(...attempts[0]!.tried.map((t) => t.recall))).toBeLessThan(0.9);
    expect(chosen?.graph).toBe('angular');
    expect(chosen!.recall).toBeGreaterThanOrEqual(0.99);
    expect(chosen!.index.params.expansionSearch).toBe(chosen!.expansionSearch);
    expect(attempts[1]!.tried.at(-1)).toEqual({ expansionSearch: chosen!.expansionSearch, recall: chosen!.recall });
    // What it measured is what it serves: inner-product scores, ranked by inner product.
    const got = chosen!.index.search(towerUsers, 10);
    const exact = exactTopK(towerLike, DIMS, towerUsers, 10);
    expect(recallAtK(got.keys, exact.keys, 300, 10)).toBe(chosen!.recall);
    for (let j = 0; j < 10; j++) expect(got.scores[j]).toBeCloseTo(exact.scores[j]!, 4);
  });

  it('keeps the inner-product graph when it reaches the target, building nothing else', () => {
    const items = clusteredItems({ items: 3000, dims: DIMS, clusters: 55, seed: 23 });
    const users = userQueries(items, DIMS, { queries: 300, seed: 24 });
    const { chosen, attempts } = buildTunedHnsw(items, DIMS, users, { threads: 1 });
    expect(attempts.map((a) => a.graph)).toEqual(['ip']);
    expect(chosen?.graph).toBe('ip');
    expect(chosen!.recall).toBeGreaterThanOrEqual(0.99);
  });

  it('returns no index when no graph kind reaches the target', () => {
    const tried: string[] = [];
    const result = buildTunedHnsw(towerLike, DIMS, towerUsers, {
      threads: 1,
      graphs: ['ip'],
      candidates: [16, 64],
      onTry: (t) => tried.push(`${t.graph} ${t.expansionSearch}`),
    });
    expect(result.chosen).toBeUndefined();
    expect(tried).toEqual(['ip 16', 'ip 64']);
    expect(result.attempts).toHaveLength(1);
    expect(() => buildTunedHnsw(towerLike, DIMS, towerUsers, { graphs: [] })).toThrow('graphs: empty');
  });
});
