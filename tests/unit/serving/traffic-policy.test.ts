/** The traffic policy: validation messages, normalisation, sticky and deterministic assignment, and the split. */
import {
  BUCKETS,
  PolicyError,
  TrafficPolicy,
  bucketOf,
  compareVersions,
  normaliseWeights,
} from '../../../serving/traffic-policy';

const loaded = ['1', '2', '3'];
const users = (n: number, prefix = 'user-') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

function counts(policy: TrafficPolicy, ids: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const u of ids) {
    const v = policy.pick(u);
    out.set(v, (out.get(v) ?? 0) + 1);
  }
  return out;
}

describe('validation names the field and the value', () => {
  const reject = (weights: Record<string, number>) => {
    try {
      TrafficPolicy.of(weights, loaded);
    } catch (err) {
      expect(err).toBeInstanceOf(PolicyError);
      return err as PolicyError;
    }
    throw new Error('accepted');
  };

  test('a version that is not loaded', () => {
    const err = reject({ '1': 50, '7': 50 });
    expect(err).toMatchObject({ field: 'weights["7"]', value: '7' });
    expect(err.message).toBe('weights["7"] names a version that is not loaded (loaded: 1, 2, 3) (value: "7")');
  });

  test('a negative weight', () => {
    expect(reject({ '1': 110, '2': -10 }).message).toBe('weights["2"] must not be negative (value: -10)');
  });

  test('a fractional weight', () => {
    expect(reject({ '1': 0.5 }).message).toBe('weights["1"] must be an integer (value: 0.5)');
  });

  test('weights summing to 0, or none at all', () => {
    expect(reject({ '1': 0, '2': 0 }).message).toBe('weights must sum to more than 0 (value: {"1":0,"2":0})');
    expect(reject({})).toMatchObject({ field: 'weights' });
  });
});

describe('normalisation', () => {
  const set = new Set(loaded);
  test('weights summing to 100 are kept; zero weights are dropped', () => {
    expect(Object.fromEntries(normaliseWeights({ '1': 90, '2': 10, '3': 0 }, set))).toEqual({ '1': 90, '2': 10 });
  });

  test('other sums are scaled to 100 by largest remainder', () => {
    expect(Object.fromEntries(normaliseWeights({ '1': 1, '2': 1 }, set))).toEqual({ '1': 50, '2': 50 });
    const thirds = normaliseWeights({ '1': 1, '2': 1, '3': 1 }, set);
    expect([...thirds.values()].reduce((a, b) => a + b, 0)).toBe(BUCKETS);
    expect([...thirds.values()].sort()).toEqual([33, 33, 34]);
    expect(Object.fromEntries(normaliseWeights({ '1': 3, '2': 997 }, set))).toEqual({ '2': 100 });
  });

  test('versions compare numerically', () => {
    expect(['10', '9', '2', 'b', 'a'].sort(compareVersions)).toEqual(['2', '9', '10', 'a', 'b']);
  });
});

describe('assignment', () => {
  test('buckets are in [0, 100) and deterministic', () => {
    for (const u of users(1000)) {
      const b = bucketOf('s', u);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(BUCKETS);
      expect(bucketOf('s', u)).toBe(b);
    }
    // Fixed values: the hash must not change between releases, or every user would move version on upgrade.
    expect([bucketOf('recsys', 'u1'), bucketOf('recsys', 'u2'), bucketOf('other', 'u1')]).toEqual([59, 49, 81]);
  });

  test('the same user keeps the same version while the policy is unchanged, in any policy object', () => {
    const a = TrafficPolicy.of({ '1': 50, '2': 50 }, loaded);
    const b = TrafficPolicy.of({ '2': 50, '1': 50 }, loaded);
    for (const u of users(500)) {
      const v = a.pick(u);
      expect(a.pick(u)).toBe(v);
      expect(b.pick(u)).toBe(v);
    }
  });

  test('the split over many users is within tolerance of the weights', () => {
    const n = 20_000;
    const policy = TrafficPolicy.of({ '1': 70, '2': 20, '3': 10 }, loaded);
    const c = counts(policy, users(n));
    // Binomial standard deviation at 70% of 20k is ~65 users; 1.5 points is over 4 of them.
    expect(Math.abs(c.get('1')! / n - 0.7)).toBeLessThan(0.015);
    expect(Math.abs(c.get('2')! / n - 0.2)).toBeLessThan(0.015);
    expect(Math.abs(c.get('3')! / n - 0.1)).toBeLessThan(0.015);
  });

  test('every bucket is reached, evenly, also by ids that differ only at the end', () => {
    const seen = new Array<number>(BUCKETS).fill(0);
    for (const u of users(50_000, '')) seen[bucketOf('recsys', u)]!++;
    expect(Math.min(...seen)).toBeGreaterThan(400);
    expect(Math.max(...seen)).toBeLessThan(600);
  });

  test('the salt reshuffles users; growing a weight with the same salt only moves users towards it', () => {
    const ids = users(2000);
    const a = TrafficPolicy.of({ '1': 50, '2': 50 }, loaded, 'a');
    const b = TrafficPolicy.of({ '1': 50, '2': 50 }, loaded, 'b');
    const moved = ids.filter((u) => a.pick(u) !== b.pick(u)).length;
    expect(moved / ids.length).toBeGreaterThan(0.35);

    const canary10 = TrafficPolicy.of({ '1': 90, '2': 10 }, loaded);
    const canary30 = TrafficPolicy.of({ '1': 70, '2': 30 }, loaded);
    for (const u of ids) if (canary10.pick(u) === '2') expect(canary30.pick(u)).toBe('2');
  });

  test('only() sends everything to one version; primary is the largest share', () => {
    const only = TrafficPolicy.only('3');
    expect(new Set(users(300).map((u) => only.pick(u)))).toEqual(new Set(['3']));
    expect(only.primary).toBe('3');
    expect(TrafficPolicy.of({ '1': 40, '2': 60 }, loaded).primary).toBe('2');
    expect(TrafficPolicy.of({ '1': 50, '2': 50 }, loaded).primary).toBe('2');
    expect(TrafficPolicy.of({ '1': 1, '2': 3 }, loaded).toJSON()).toEqual({
      weights: { '1': 25, '2': 75 },
      salt: 'recsys',
    });
  });
});
