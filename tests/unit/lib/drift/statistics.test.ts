import {
  bucketPoints,
  chiSquareCdf,
  chiSquareHomogeneity,
  chiSquareSurvival,
  histogramMoments,
  jensenShannon,
  jensenShannonAllowance,
  logGamma,
  mergeBuckets,
  normalisedWasserstein,
  psi,
  PSI_EPSILON,
  quantileGroups,
  regularisedGammaP,
  regularisedGammaQ,
  twoProportionZTest,
} from '../../../../lib/drift/statistics';

describe('Jensen-Shannon and PSI', () => {
  test('Jensen-Shannon (bits) of hand-computed cases', () => {
    expect(jensenShannon([5, 5], [5, 5])).toBe(0);
    expect(jensenShannon([1, 0], [0, 1])).toBeCloseTo(1, 12);
    // p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4).
    const expected = 0.5 * (0.5 * Math.log2(0.5 / 0.75) + 0.5 * Math.log2(0.5 / 0.25)) + 0.5 * Math.log2(1 / 0.75);
    expect(jensenShannon([10, 10], [7, 0])).toBeCloseTo(expected, 12);
    expect(expected).toBeCloseTo(0.3113, 4);
  });

  test('the sampling allowance counts the buckets either side uses, not the empty ones', () => {
    // k = 3 used buckets of 5, n1 = 100, n2 = 300: (3 - 1)(1/100 + 1/300) / (8 ln 2).
    expect(jensenShannonAllowance([50, 50, 0, 0, 0], [100, 100, 100, 0, 0])).toBeCloseTo(
      (2 * (1 / 100 + 1 / 300)) / (8 * Math.LN2),
      12,
    );
    expect(jensenShannonAllowance([0, 0], [1, 2])).toBe(Infinity);
  });

  test('PSI of hand-computed cases, with the epsilon for an empty bucket', () => {
    expect(psi([50, 50], [50, 50])).toBe(0);
    expect(psi([50, 50], [25, 75])).toBeCloseTo(-0.25 * Math.log(0.5) + 0.25 * Math.log(1.5), 12);
    expect(psi([50, 50], [25, 75])).toBeCloseTo(0.2747, 4);
    // The empty bucket counts as PSI_EPSILON of the reference instead of making PSI infinite.
    const e = PSI_EPSILON;
    expect(psi([100, 0], [50, 50])).toBeCloseTo((0.5 - 1) * Math.log(0.5) + (0.5 - e) * Math.log(0.5 / e), 12);
    // Buckets empty on both sides add nothing.
    expect(psi([50, 0, 50], [25, 0, 75])).toBeCloseTo(psi([50, 50], [25, 75]), 12);
    expect(psi([], [1])).toBe(0);
  });
});

describe('gamma and chi-square distributions', () => {
  test('log-gamma and incomplete gamma against closed forms', () => {
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
    expect(logGamma(101)).toBeCloseTo(363.73937555556347, 9);
    for (const x of [0.1, 1, 2.5, 10, 40]) {
      // P(1, x) = 1 - e^-x; P(1/2, x) = erf(sqrt x).
      expect(regularisedGammaP(1, x)).toBeCloseTo(1 - Math.exp(-x), 13);
      expect(regularisedGammaQ(1, x)).toBeCloseTo(Math.exp(-x), 13);
    }
    expect(regularisedGammaP(0.5, 1)).toBeCloseTo(0.8427007929497149, 13); // erf(1)
    expect(regularisedGammaP(3, 0)).toBe(0);
    expect(regularisedGammaQ(3, 0)).toBe(1);
    expect(() => regularisedGammaP(0, 1)).toThrow('a=0');
  });

  test.each([
    // Table values: the 95% and 99.9% points of the chi-square distribution.
    [3.841458820694124, 1, 0.95],
    [5.991464547107979, 2, 0.95],
    [18.307038053275146, 10, 0.95],
    [10.827566170662733, 1, 0.999],
    [29.588298445074418, 10, 0.999],
    [124.34211340400407, 100, 0.95],
  ])('chi-square cdf(%d, %d) = %d', (x, df, p) => {
    expect(chiSquareCdf(x, df)).toBeCloseTo(p, 12);
    expect(chiSquareSurvival(x, df)).toBeCloseTo(1 - p, 12);
  });

  test('the survival function stays accurate far in the tail', () => {
    // P(chi2(2) > x) = exp(-x/2) exactly.
    expect(chiSquareSurvival(200, 2) / Math.exp(-100)).toBeCloseTo(1, 10);
    expect(chiSquareSurvival(1e6, 9)).toBe(0);
    expect(chiSquareSurvival(0, 3)).toBe(1);
    expect(chiSquareCdf(-1, 3)).toBe(0);
  });
});

describe('tests of homogeneity', () => {
  test('chi-square on a 2 x 2 table by hand, empty buckets dropped', () => {
    // Expected 15 in every cell: 4 x 25 / 15.
    const r = chiSquareHomogeneity([10, 20], [20, 10]);
    expect(r.statistic).toBeCloseTo(20 / 3, 12);
    expect(r.df).toBe(1);
    expect(r.pValue).toBeCloseTo(0.009823, 6);
    expect(chiSquareHomogeneity([10, 0, 20, 0], [20, 0, 10, 0])).toEqual(r);
  });

  test('chi-square on a 2 x 3 table by hand', () => {
    // Rows 60 and 40; columns 30, 40, 30: expected (18, 24, 18) and (12, 16, 12).
    const r = chiSquareHomogeneity([20, 30, 10], [10, 10, 20]);
    const s = 4 / 18 + 36 / 24 + 64 / 18 + 4 / 12 + 36 / 16 + 64 / 12;
    expect(r.statistic).toBeCloseTo(s, 12);
    expect(r.df).toBe(2);
    expect(r.pValue).toBeCloseTo(Math.exp(-s / 2), 12); // chi2(2) survival
  });

  test('nothing to test gives p = 1', () => {
    expect(chiSquareHomogeneity([0, 0], [3, 4]).pValue).toBe(1);
    expect(chiSquareHomogeneity([5, 0], [3, 0])).toEqual({ statistic: 0, df: 0, pValue: 1 });
  });

  test('two-proportion z-test by hand, and its square is the 2 x 2 chi-square', () => {
    // 50/100 vs 60/100: pooled 0.55, se = sqrt(0.55 * 0.45 * 0.02).
    const r = twoProportionZTest(50, 100, 60, 100);
    expect(r.z).toBeCloseTo(0.1 / Math.sqrt(0.55 * 0.45 * 0.02), 12);
    expect(r.z).toBeCloseTo(1.4213, 4);
    expect(r.pValue).toBeCloseTo(0.15522, 4); // 2 (1 - Φ(1.4213))
    expect(chiSquareHomogeneity([50, 50], [40, 60]).statistic).toBeCloseTo(r.z ** 2, 12);
    expect(twoProportionZTest(60, 100, 50, 100).z).toBeCloseTo(-r.z, 12);
    expect(twoProportionZTest(0, 100, 0, 50)).toEqual({ z: 0, pValue: 1 });
    expect(twoProportionZTest(0, 0, 1, 5)).toEqual({ z: 0, pValue: 1 });
  });
});

describe('numeric histograms', () => {
  test('bucket points: midpoints inside, open-ended buckets at their edge', () => {
    expect(bucketPoints([0, 2, 4])).toEqual([0, 1, 3, 4]);
    expect(bucketPoints([])).toEqual([0]);
  });

  test('normalised Wasserstein by hand', () => {
    const points = bucketPoints([0, 2, 4]); // 0, 1, 3, 4
    // Reference: half at 1, half at 3 (mean 2, sd 1). Current: half at 3, half at 4. W1 = 0.5 * 2 + 0.5 * 1.
    expect(histogramMoments([0, 5, 5, 0], points)).toEqual({ mean: 2, std: 1 });
    expect(normalisedWasserstein([0, 5, 5, 0], [0, 0, 5, 5], points)).toBeCloseTo(1.5, 12);
    expect(normalisedWasserstein([0, 5, 5, 0], [0, 5, 5, 0], points)).toBe(0);
    // A constant reference divides by the floor, not by zero.
    expect(normalisedWasserstein([0, 5, 0, 0], [0, 0, 5, 0], points)).toBeCloseTo(2 / 1e-3, 6);
    expect(normalisedWasserstein([], [1], points)).toBe(0);
  });

  test('fine bins merge into reference deciles', () => {
    const uniform = new Array<number>(20).fill(7);
    const g = quantileGroups(uniform);
    expect(g).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]);
    expect(mergeBuckets(uniform, g)).toEqual(new Array<number>(10).fill(14));
    // A heavy bin makes its group heavier; bins outside the reference join the end groups; groups have no gaps.
    const ref = [0, 0, 50, 10, 10, 10, 10, 10, 0, 0];
    const h = quantileGroups(ref);
    expect(h).toEqual([0, 0, 0, 1, 2, 3, 4, 5, 5, 5]);
    expect(mergeBuckets(ref, h)).toEqual([50, 10, 10, 10, 10, 10]);
    expect(mergeBuckets([1, 0, 0, 0, 0, 0, 0, 0, 0, 2], h)).toEqual([1, 0, 0, 0, 0, 2]);
    expect(quantileGroups([0, 0])).toEqual([0, 0]);
  });
});
