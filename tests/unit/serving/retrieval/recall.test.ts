/** recall@k: the share of the exact top-k the approximate top-k found, averaged over queries; order does not count. */
import { recallAtK } from '../../../../serving/retrieval/recall';

const keys = (...v: number[]) => BigInt64Array.from(v.map(BigInt));

describe('recallAtK', () => {
  it('counts the overlap per query, whatever the order, and averages over queries', () => {
    const exact = keys(1, 2, 3, 4, 5, 6);
    expect(recallAtK(keys(3, 2, 1, 6, 5, 4), exact, 2, 3)).toBe(1);
    expect(recallAtK(keys(7, 8, 9, 7, 8, 9), exact, 2, 3)).toBe(0);
    // Query 1 finds 2 of 3, query 2 finds 1 of 3.
    expect(recallAtK(keys(1, 2, 9, 9, 9, 4), exact, 2, 3)).toBeCloseTo(3 / 6, 12);
  });

  it('counts a key repeated in the approximate row once', () => {
    expect(recallAtK(keys(1, 1, 1), keys(1, 2, 3), 1, 3)).toBeCloseTo(1 / 3, 12);
  });

  it('rejects rows of the wrong length naming which', () => {
    expect(() => recallAtK(keys(1, 2), keys(1, 2, 3), 1, 3)).toThrow('approx: length 2, expected queries x k = 1 x 3');
    expect(() => recallAtK(keys(1, 2, 3), keys(1, 2), 1, 3)).toThrow('exact: length 2');
    expect(() => recallAtK(keys(), keys(), 0, 3)).toThrow('queries must be a positive integer, got 0');
  });
});
