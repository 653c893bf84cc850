/**
 * The statistics of drift detection on bucket counts: effect sizes (Jensen-Shannon, PSI, normalised Wasserstein),
 * the tests used only as a second condition (chi-square test of homogeneity, two-proportion z-test) and the merging
 * of fine score bins into the reference's deciles. Pure functions over count arrays, bucket i of one array against
 * bucket i of the other.
 *
 * The chi-square distribution is computed here (regularised incomplete gamma, Numerical Recipes' series and continued
 * fraction) rather than taken from npm: the maintained package (@stdlib/stats-base-dists-chisquare-cdf) brings 211
 * packages for one function. Checked against it once (CDF within 3e-14, survival within 2e-13 relative, df 1-200)
 * and against table values in the unit tests.
 */
import { distances, samplingAllowance } from '../dataset/anomalies';

export const sum = (xs: readonly number[]): number => {
  let s = 0;
  for (const x of xs) s += x;
  return s;
};

/** Counts as the record `distances` and `samplingAllowance` take, without empty buckets (they are no category). */
const asRecord = (counts: readonly number[]): Record<string, number> => {
  const out: Record<string, number> = {};
  counts.forEach((c, i) => {
    if (c > 0) out[String(i)] = c;
  });
  return out;
};

/** Jensen-Shannon divergence (base 2, in [0, 1]) between the distributions of two count arrays. */
export const jensenShannon = (a: readonly number[], b: readonly number[]): number =>
  distances(asRecord(a), asRecord(b)).jensenShannon;

/**
 * The Jensen-Shannon two samples of one distribution reach by chance, (k - 1)(1/n1 + 1/n2) / (8 ln 2) for the k
 * buckets either sample uses; added to a threshold. Infinity when either sample is empty.
 */
export function jensenShannonAllowance(a: readonly number[], b: readonly number[]): number {
  const ra = asRecord(a);
  const rb = asRecord(b);
  return samplingAllowance('jensen-shannon', ra, rb, sum(a), sum(b));
}

/** Share floor for empty buckets in PSI (a bucket empty on one side would make it infinite). */
export const PSI_EPSILON = 1e-4;

/** Population stability index, sum of (q - p) ln(q / p) over the buckets' shares, each floored at `epsilon`. */
export function psi(reference: readonly number[], current: readonly number[], epsilon = PSI_EPSILON): number {
  const n1 = sum(reference);
  const n2 = sum(current);
  if (n1 <= 0 || n2 <= 0) return 0;
  let out = 0;
  const k = Math.max(reference.length, current.length);
  for (let i = 0; i < k; i++) {
    const a = reference[i] ?? 0;
    const b = current[i] ?? 0;
    if (a === 0 && b === 0) continue;
    const p = Math.max(a / n1, epsilon);
    const q = Math.max(b / n2, epsilon);
    out += (q - p) * Math.log(q / p);
  }
  return out;
}

// ---- the gamma and chi-square distributions ----------------------------------------------------------------------

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 (Lanczos, g = 7: about 15 significant digits). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const y = x - 1;
  let s = LANCZOS[0]!;
  for (let i = 1; i < LANCZOS.length; i++) s += LANCZOS[i]! / (y + i);
  const t = y + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(s);
}

const EPS = 1e-15;
const FPMIN = 1e-300;
const MAX_ITERATIONS = 10_000;

/** P(a, x) by its series; converges quickly for x < a + 1. */
function gammaSeries(a: number, x: number): number {
  let ap = a;
  let del = 1 / a;
  let s = del;
  for (let n = 0; n < MAX_ITERATIONS; n++) {
    ap += 1;
    del *= x / ap;
    s += del;
    if (Math.abs(del) < Math.abs(s) * EPS) return s * Math.exp(-x + a * Math.log(x) - logGamma(a));
  }
  throw new Error(`incomplete gamma series did not converge (a=${a}, x=${x})`);
}

/** Q(a, x) by its continued fraction (modified Lentz); converges quickly for x >= a + 1. */
function gammaContinuedFraction(a: number, x: number): number {
  let b = x + 1 - a;
  let c = 1 / FPMIN;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i <= MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < FPMIN) d = FPMIN;
    c = b + an / c;
    if (Math.abs(c) < FPMIN) c = FPMIN;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPS) return Math.exp(-x + a * Math.log(x) - logGamma(a)) * h;
  }
  throw new Error(`incomplete gamma continued fraction did not converge (a=${a}, x=${x})`);
}

function checkGammaArgs(a: number, x: number): void {
  if (!(a > 0) || !(x >= 0) || !Number.isFinite(a))
    throw new Error(`incomplete gamma needs a > 0, x >= 0 (a=${a}, x=${x})`);
}

/** The regularised lower incomplete gamma function P(a, x) = γ(a, x) / Γ(a). */
export function regularisedGammaP(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 0;
  if (x === Infinity) return 1;
  return x < a + 1 ? gammaSeries(a, x) : 1 - gammaContinuedFraction(a, x);
}

/** The regularised upper incomplete gamma function Q(a, x) = 1 - P(a, x), accurate in the far tail. */
export function regularisedGammaQ(a: number, x: number): number {
  checkGammaArgs(a, x);
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  return x < a + 1 ? 1 - gammaSeries(a, x) : gammaContinuedFraction(a, x);
}

/** P(X <= x) for X chi-square with `df` degrees of freedom. */
export const chiSquareCdf = (x: number, df: number): number => (x <= 0 ? 0 : regularisedGammaP(df / 2, x / 2));
/** P(X > x) for X chi-square with `df` degrees of freedom: the p-value of a statistic x. */
export const chiSquareSurvival = (x: number, df: number): number => (x <= 0 ? 1 : regularisedGammaQ(df / 2, x / 2));

// ---- tests ---------------------------------------------------------------------------------------------------------

export interface TestResult {
  statistic: number;
  /** Degrees of freedom (chi-square); 0 when there was nothing to test. */
  df: number;
  pValue: number;
}

/**
 * Pearson's chi-square test of homogeneity on the 2 x k table of two count arrays: could both be samples of one
 * distribution? Buckets empty in both are dropped (they carry no information and would have an expected count of 0).
 * Nothing to test (an empty sample, one bucket left) gives p = 1.
 */
export function chiSquareHomogeneity(a: readonly number[], b: readonly number[]): TestResult {
  const n1 = sum(a);
  const n2 = sum(b);
  const n = n1 + n2;
  const cols: [number, number][] = [];
  const k = Math.max(a.length, b.length);
  for (let i = 0; i < k; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x + y > 0) cols.push([x, y]);
  }
  if (n1 <= 0 || n2 <= 0 || cols.length < 2) return { statistic: 0, df: 0, pValue: 1 };
  let statistic = 0;
  for (const [x, y] of cols) {
    const e1 = (n1 * (x + y)) / n;
    const e2 = (n2 * (x + y)) / n;
    statistic += (x - e1) ** 2 / e1 + (y - e2) ** 2 / e2;
  }
  const df = cols.length - 1;
  return { statistic, df, pValue: chiSquareSurvival(statistic, df) };
}

/**
 * Two-sided two-proportion z-test (pooled variance) of x1 successes in n1 against x2 in n2; z > 0 when the second
 * share is larger. Equal shares or an empty sample give z = 0, p = 1.
 */
export function twoProportionZTest(x1: number, n1: number, x2: number, n2: number): { z: number; pValue: number } {
  if (n1 <= 0 || n2 <= 0) return { z: 0, pValue: 1 };
  const pooled = (x1 + x2) / (n1 + n2);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  if (!(se > 0)) return { z: 0, pValue: 1 };
  const z = (x2 / n2 - x1 / n1) / se;
  // P(|Z| > |z|) = P(chi-square(1) > z^2).
  return { z, pValue: chiSquareSurvival(z * z, 1) };
}

// ---- numeric values on histograms ----------------------------------------------------------------------------------

/**
 * The value that stands for each bucket of a histogram over `edges` (bucket 0 below the first edge, bucket i in
 * [edges[i-1], edges[i]), the last at or above the last edge): interior buckets at their midpoint, the two open-ended
 * buckets at their edge (their extent is unknown; placing them there underestimates distances, never invents them).
 */
export function bucketPoints(edges: readonly number[]): number[] {
  if (edges.length === 0) return [0];
  const out = [edges[0]!];
  for (let i = 1; i < edges.length; i++) out.push((edges[i - 1]! + edges[i]!) / 2);
  out.push(edges[edges.length - 1]!);
  return out;
}

/** Mean and standard deviation of a histogram whose buckets stand at `points`; NaN for an empty histogram. */
export function histogramMoments(counts: readonly number[], points: readonly number[]): { mean: number; std: number } {
  const n = sum(counts);
  if (n <= 0) return { mean: NaN, std: NaN };
  let m = 0;
  counts.forEach((c, i) => (m += c * points[i]!));
  m /= n;
  let v = 0;
  counts.forEach((c, i) => (v += c * (points[i]! - m) ** 2));
  return { mean: m, std: Math.sqrt(v / n) };
}

/** Floor of the normalising standard deviation (Evidently's: a constant reference would divide by zero). */
export const WASSERSTEIN_MIN_STD = 1e-3;

/**
 * The Wasserstein-1 distance between two histograms over the same buckets (standing at ascending `points`), divided
 * by the reference's standard deviation as Evidently normalises it: in units of the reference's spread, so 0.1 means
 * the mass moved a tenth of a standard deviation on average. 0 when either histogram is empty.
 */
export function normalisedWasserstein(
  reference: readonly number[],
  current: readonly number[],
  points: readonly number[],
  minStd = WASSERSTEIN_MIN_STD,
): number {
  const n1 = sum(reference);
  const n2 = sum(current);
  if (n1 <= 0 || n2 <= 0) return 0;
  // W1 on a line is the area between the two CDFs.
  let f1 = 0;
  let f2 = 0;
  let w = 0;
  for (let i = 0; i < points.length - 1; i++) {
    f1 += (reference[i] ?? 0) / n1;
    f2 += (current[i] ?? 0) / n2;
    w += Math.abs(f1 - f2) * (points[i + 1]! - points[i]!);
  }
  const { std } = histogramMoments(reference, points);
  return w / Math.max(std, minStd);
}

// ---- merging fine bins ---------------------------------------------------------------------------------------------

/**
 * Groups consecutive fine bins into `groups` buckets that each hold about 1/groups of the reference's mass: bin i
 * goes to the quantile its start falls in (as popularity deciles are cut), so the bins below the reference's lowest
 * value join the first group and those above its highest the last. A bin heavier than a group makes its group
 * heavier (the groups stay consecutive, numbered 0..g-1 without gaps). Returns the group of each fine bin.
 */
export function quantileGroups(reference: readonly number[], groups = 10): number[] {
  const total = sum(reference);
  if (total <= 0) return reference.map(() => 0);
  const raw: number[] = [];
  let before = 0;
  for (const c of reference) {
    raw.push(Math.min(groups - 1, Math.floor((before / total) * groups)));
    before += c;
  }
  // Renumber the quantiles that some bin starts in as 0, 1, 2, ...
  const ids = new Map<number, number>();
  return raw.map((g) => {
    if (!ids.has(g)) ids.set(g, ids.size);
    return ids.get(g)!;
  });
}

/** Adds fine bin counts into the groups `quantileGroups` chose. */
export function mergeBuckets(counts: readonly number[], groupOf: readonly number[]): number[] {
  const out = new Array<number>(groupOf.length === 0 ? 0 : Math.max(...groupOf) + 1).fill(0);
  groupOf.forEach((g, i) => (out[g]! += counts[i] ?? 0));
  return out;
}
