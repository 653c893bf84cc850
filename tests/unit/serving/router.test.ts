/**
 * The adaptive router: the confidence measures on known vectors and their edge cases, the route decisions in each
 * mode, the budget invariant under 5x overload, and the config's defaults and errors.
 */
import { ConfigError } from '../../../lib/errors';
import {
  AdaptiveRouter,
  createRouter,
  marginOf,
  measureConfidence,
  normalisedEntropyOf,
  type RouteDecision,
} from '../../../serving/router';
import { routerSettings, type RouterConfigInput, type RouterSettings } from '../../../serving/router-config';
import { TokenBucket } from '../../../serving/token-bucket';

const f32 = (...xs: number[]) => Float32Array.from(xs);

function manualClock() {
  let t = 0;
  return { now: () => t, set: (ms: number) => void (t = ms) };
}

/** Deterministic PRNG (mulberry32), so the load test's arrivals are the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe('confidence measures on known vectors', () => {
  test('margin: the raw top-1/top-2 gap, or of softmax probabilities with a temperature', () => {
    expect(marginOf(f32(3, 1, 0), 3)).toBe(2);
    // softmax(ln 3, 0) = (0.75, 0.25)
    expect(marginOf([Math.log(3), 0], 2, 1)).toBeCloseTo(0.5, 12);
    // The temperature divides the scores: (2 ln 3, 0) at T = 2 is the same distribution.
    expect(marginOf([2 * Math.log(3), 0], 2, 2)).toBeCloseTo(0.5, 12);
    // Over the top 3: softmax(ln 2, 0, 0) = (0.5, 0.25, 0.25)
    expect(marginOf([Math.log(2), 0, 0], 3, 1)).toBeCloseTo(0.25, 12);
  });

  test('entropy: normalised by ln(m) into [0, 1]', () => {
    expect(normalisedEntropyOf(f32(4, 4, 4, 4), 4, 1)).toBe(1);
    // (0.5, 0.25, 0.25): H = 1.5 ln 2, over ln 3
    expect(normalisedEntropyOf([Math.log(2), 0, 0], 3, 1)).toBeCloseTo((1.5 * Math.LN2) / Math.log(3), 12);
    expect(normalisedEntropyOf([2 * Math.log(2), 0, 0], 3, 2)).toBeCloseTo((1.5 * Math.LN2) / Math.log(3), 12);
    expect(normalisedEntropyOf(f32(100, 0, 0), 3, 1)).toBeLessThan(1e-40);
    // Only the top m count: three tied scores then a far one.
    expect(normalisedEntropyOf(f32(5, 5, 5, -1000), 3, 1)).toBe(1);
    expect(normalisedEntropyOf(f32(5, 5, 5, -1000), 4, 1)).toBeCloseTo(Math.log(3) / Math.log(4), 12);
  });

  test('large scores do not overflow the softmax', () => {
    expect(normalisedEntropyOf(f32(1e30, 1e30), 2, 1)).toBe(1);
    expect(marginOf(f32(1000, 999), 2, 1)).toBeCloseTo(Math.tanh(0.5), 6);
  });

  test('direction: margin confident at or above the threshold, entropy at or below', () => {
    const margin = { measure: 'margin', threshold: 0.5, topM: 10 } as const;
    expect(measureConfidence(f32(2, 1.5), margin)).toEqual({ value: 0.5, confident: true });
    expect(measureConfidence(f32(2, 1.75), margin)).toEqual({ value: 0.25, confident: false });
    const entropy = { measure: 'entropy', threshold: 0.5, topM: 3, temperature: 1 } as const;
    expect(measureConfidence(f32(20, 0, 0, 0), entropy).confident).toBe(true);
    expect(measureConfidence(f32(1, 1, 0.9, 50), entropy).confident).toBe(false); // topM = 3: 50 is not read
    // Fewer scores than topM: m is what there is.
    expect(measureConfidence(f32(3, 3), entropy)).toEqual({ value: 1, confident: false });
  });

  test('fewer than two scores, or non-finite ones, are never confident, whatever the threshold', () => {
    const lenient = { measure: 'margin', threshold: 0, topM: 10 } as const;
    expect(measureConfidence(f32(), lenient)).toEqual({ value: 0, confident: false, unmeasurable: 'too-few-scores' });
    expect(measureConfidence(f32(9), lenient)).toMatchObject({ confident: false, unmeasurable: 'too-few-scores' });
    expect(measureConfidence(f32(Number.NaN, 1), lenient)).toMatchObject({ unmeasurable: 'non-finite-score' });
    expect(measureConfidence(f32(5, -Infinity), lenient)).toMatchObject({ confident: false, value: 0 });
    // The raw margin reads the top two only; a softmax measure reads the top m.
    expect(measureConfidence(f32(5, 1, Number.NaN), lenient)).toEqual({ value: 4, confident: true });
    const entropy = { measure: 'entropy', threshold: 1, topM: 3, temperature: 1 } as const;
    expect(measureConfidence(f32(5, 1, Number.NaN), entropy)).toEqual({
      value: 1,
      confident: false,
      unmeasurable: 'non-finite-score',
    });
    expect(measureConfidence(f32(5, 1, 0, Number.NaN), entropy).confident).toBe(true);
    expect(measureConfidence(f32(Infinity, 1), { ...lenient, temperature: 1 })).toMatchObject({ confident: false });
  });
});

describe('routing', () => {
  const confident = f32(10, 1, 0);
  const unsure = f32(1, 0.99, 0.98);
  const settings = (mode: RouterSettings['mode'], rate = 1, burst = 2) =>
    routerSettings({ mode, confidence: { measure: 'margin', threshold: 0.5 }, budget: { ratePerSecond: rate, burst } });

  test('routed: confident -> cheap without a token, unsure -> cascade while tokens last, then cheap-budget', () => {
    const clock = manualClock();
    const router = createRouter(settings('routed'), clock.now);
    expect(router.route(confident)).toEqual({ route: 'cheap', confidence: 9 });
    expect(router.budgetAvailable()).toBe(2);
    expect(router.route(unsure).route).toBe('cascade');
    expect(router.route(unsure).route).toBe('cascade');
    expect(router.budgetAvailable()).toBe(0);
    const spent: RouteDecision = router.route(unsure);
    expect(spent.route).toBe('cheap-budget');
    expect(spent.confidence).toBeCloseTo(0.01, 5);
    expect(router.route(confident).route).toBe('cheap');
    clock.set(1_000);
    expect(router.route(unsure).route).toBe('cascade');
    expect(router.route(f32(1)).route).toBe('cheap-budget');
    expect(router.counts()).toEqual({ cheap: 2, cascade: 3, 'cheap-budget': 2 });
  });

  test('unmeasurable scores go to the cascade, and the decision says why', () => {
    const router = createRouter(settings('routed'), manualClock().now);
    expect(router.route(f32(Number.NaN, 0))).toEqual({
      route: 'cascade',
      confidence: 0,
      unmeasurable: 'non-finite-score',
    });
  });

  test('always-cheap never takes a token; always-cascade is unbounded and takes none either', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(1, 2, clock.now);
    const cheap = new AdaptiveRouter(settings('always-cheap'), bucket);
    for (let i = 0; i < 50; i++) expect(cheap.route(unsure).route).toBe('cheap');
    const cascade = new AdaptiveRouter(settings('always-cascade'), bucket);
    for (let i = 0; i < 50; i++) expect(cascade.route(i % 2 ? unsure : confident).route).toBe('cascade');
    expect(bucket.available()).toBe(2);
    expect(cheap.counts()).toEqual({ cheap: 50, cascade: 0, 'cheap-budget': 0 });
    expect(cascade.counts()).toEqual({ cheap: 0, cascade: 50, 'cheap-budget': 0 });
    // The baselines still report the confidence the router would have used.
    expect(cascade.route(confident).confidence).toBe(9);
  });

  test('counts() is a copy', () => {
    const router = createRouter(settings('routed'), manualClock().now);
    const c = router.counts();
    c.cheap = 99;
    expect(router.counts().cheap).toBe(0);
  });
});

describe('the budget holds under 5x its rate', () => {
  test('steady overload, all unsure, 60 s: cascade <= rate * t + burst at every request, and exactly reaches it', () => {
    const rate = 20;
    const burst = 20;
    const clock = manualClock();
    const router = createRouter(routerSettings({ budget: { ratePerSecond: rate, burst } }), clock.now);
    const unsure = f32(1, 1, 1);
    let cascade = 0;
    for (let ms = 0; ms <= 60_000; ms += 10) {
      // 100 requests per second = 5x the rate
      clock.set(ms);
      if (router.route(unsure).route === 'cascade') cascade += 1;
      // In thousandths of a token, so both sides are exact integers.
      expect(cascade * 1000).toBeLessThanOrEqual(rate * ms + burst * 1000);
    }
    expect(cascade).toBe(rate * 60 + burst);
    expect(router.counts()).toEqual({ cheap: 0, cascade, 'cheap-budget': 6_001 - cascade });
  });

  test('random bursty arrivals and mixed confidence: no window of any length exceeds rate * length + burst', () => {
    const rate = 2.5;
    const burst = 4;
    const clock = manualClock();
    const router = createRouter(
      routerSettings({ confidence: { measure: 'margin', threshold: 0.5 }, budget: { ratePerSecond: rate, burst } }),
      clock.now,
    );
    const random = mulberry32(15);
    const cascadeTimes: number[] = [];
    let t = 0;
    let requests = 0;
    while (t <= 60_000) {
      // Exponential gaps at 5x the rate on average, 1 in 50 arrivals a burst of 20 at once; times are multiples
      // of 1/1024 ms (exact in binary, with fractional milliseconds) so the checks below are exact.
      const n = random() < 0.02 ? 20 : 1;
      for (let i = 0; i < n; i++) {
        const scores = random() < 0.3 ? f32(2, 1) : f32(1, 0.9);
        if (router.route(scores).route === 'cascade') cascadeTimes.push(t);
        requests += 1;
      }
      t += Math.round((-Math.log(1 - random()) * 1000 * 1024) / (5 * rate)) / 1024;
      clock.set(t);
    }
    expect(requests).toBeGreaterThan(5 * rate * 60);
    // From the start: count <= rate * t + burst at each cascade request.
    cascadeTimes.forEach((at, i) => expect((i + 1) * 1000).toBeLessThanOrEqual(rate * at + burst * 1000));
    // Every window between two cascade requests (the tightest windows there are).
    let worst = -Infinity;
    for (let i = 0; i < cascadeTimes.length; i++)
      for (let j = i; j < cascadeTimes.length; j++)
        worst = Math.max(worst, (j - i + 1) * 1000 - rate * (cascadeTimes[j]! - cascadeTimes[i]!) - burst * 1000);
    expect(worst).toBeLessThanOrEqual(0);
    // The budget is used, not just respected: overload keeps the bucket near empty.
    expect(cascadeTimes.length).toBeGreaterThan(0.95 * rate * 60);
    expect(cascadeTimes.length).toBeLessThanOrEqual(rate * 60 + burst);
  });
});

describe('router config', () => {
  test('defaults: routed, margin 0.1 over the raw gap, top 10, burst max(1, rate)', () => {
    expect(routerSettings({ budget: { ratePerSecond: 5 } })).toEqual({
      mode: 'routed',
      confidence: { measure: 'margin', threshold: 0.1, topM: 10 },
      budget: { ratePerSecond: 5, burst: 5 },
    });
    expect(routerSettings({ budget: { ratePerSecond: 0.25 } }).budget.burst).toBe(1);
    expect(routerSettings({ confidence: { measure: 'entropy' }, budget: { ratePerSecond: 5 } }).confidence).toEqual({
      measure: 'entropy',
      threshold: 0.8,
      topM: 10,
      temperature: 0.1,
    });
    const given = routerSettings({
      mode: 'always-cascade',
      confidence: { measure: 'margin', threshold: 0.02, topM: 5, temperature: 0.5 },
      budget: { ratePerSecond: 40, burst: 8 },
    });
    expect(given).toEqual({
      mode: 'always-cascade',
      confidence: { measure: 'margin', threshold: 0.02, topM: 5, temperature: 0.5 },
      budget: { ratePerSecond: 40, burst: 8 },
    });
  });

  test('a bad value is a ConfigError naming the field path and the value', () => {
    const reject = (input: unknown) => {
      try {
        routerSettings(input);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return err as ConfigError;
      }
      throw new Error('accepted');
    };
    const budget = { ratePerSecond: 5 };
    expect(reject({})).toMatchObject({ field: 'router.budget', value: undefined });
    expect(reject({ budget: {} })).toMatchObject({ field: 'router.budget.ratePerSecond' });
    expect(reject({ budget: { ratePerSecond: 0 } })).toMatchObject({ field: 'router.budget.ratePerSecond', value: 0 });
    expect(reject({ budget: { ratePerSecond: 5, burst: 0.5 } }).message).toMatch(
      /'router\.budget\.burst'.*\(value: 0\.5\)/,
    );
    expect(reject({ mode: 'sometimes', budget })).toMatchObject({ field: 'router.mode', value: 'sometimes' });
    expect(reject({ confidence: { measure: 'variance' }, budget })).toMatchObject({
      field: 'router.confidence.measure',
    });
    expect(reject({ confidence: { topM: 1 }, budget })).toMatchObject({ field: 'router.confidence.topM', value: 1 });
    expect(reject({ confidence: { topM: 2.5 }, budget })).toMatchObject({ field: 'router.confidence.topM' });
    expect(reject({ confidence: { temperature: 0 }, budget })).toMatchObject({
      field: 'router.confidence.temperature',
    });
    expect(reject({ confidence: { threshold: -0.1 }, budget })).toMatchObject({
      field: 'router.confidence.threshold',
      value: -0.1,
    });
    const entropy = reject({ confidence: { measure: 'entropy', threshold: 1.5 }, budget });
    expect(entropy).toMatchObject({ field: 'router.confidence.threshold', value: 1.5 });
    expect(entropy.message).toMatch(/at most 1 for the entropy measure/);
    expect(reject({ confidence: { thresh: 0.2 }, budget })).toMatchObject({ field: 'router.confidence.thresh' });
    expect(reject({ budget, rate: 3 })).toMatchObject({ field: 'router.rate' });
  });

  test('the parsed budget is the router bucket: a config with rate 1 and burst 1 allows one cascade per second', () => {
    const input: RouterConfigInput = { budget: { ratePerSecond: 1 } };
    const clock = manualClock();
    const router = createRouter(routerSettings(input), clock.now);
    const unsure = f32(0, 0);
    expect([router.route(unsure), router.route(unsure)].map((d) => d.route)).toEqual(['cascade', 'cheap-budget']);
    clock.set(1_000);
    expect(router.route(unsure).route).toBe('cascade');
  });
});
