/**
 * The adaptive router: per request, the cheap path (single-stage retrieval) answers when it is confident, and the
 * expensive path (the cascade) takes the rest as long as its token bucket has a token; when the bucket is empty the
 * cheap answer is served anyway, as route `cheap-budget`, so the expensive path's rate never exceeds its budget under
 * any load. Pure logic: the caller runs the cheap path, asks `route` with its top scores, and runs the cascade or
 * not; the counters feed the metrics.
 *
 * Confidence comes from the cheap path's top scores, best first (the retrieval graph's sorted top-K output; the
 * measures read them in that order and do not sort):
 * - `margin`: top-1 minus top-2 score — the raw gap, or the gap of softmax probabilities over the top m when a
 *   temperature is set. Higher is more confident; confident when margin >= threshold.
 * - `entropy`: the entropy of the softmax (with temperature) over the top m scores, divided by ln(m) so it lies in
 *   [0, 1] whatever m is (0: all mass on one item; 1: the top m are tied). Lower is more confident; confident when
 *   entropy <= threshold.
 * Scores that cannot be measured are never confident, so the request goes to the cascade if the budget allows:
 * - fewer than 2 scores: there is no runner-up, so nothing says the top item stands out; one candidate left (a
 *   small or filtered catalogue) is no evidence of certainty.
 * - a non-finite score (NaN, ±Infinity) among those the measure reads: the cheap model's output is broken (a
 *   numerical blow-up, a bad graph), and neither its ranking nor a margin or entropy computed from it means anything.
 * Their reported value is the measure's least confident one (margin 0, entropy 1), so metrics stay finite.
 */
import type { ConfidenceSettings, RouterMode, RouterSettings } from './router-config';
import { TokenBucket } from './token-bucket';

export type Route = 'cheap' | 'cascade' | 'cheap-budget';
export const ROUTES: readonly Route[] = ['cheap', 'cascade', 'cheap-budget'];

export type Unmeasurable = 'too-few-scores' | 'non-finite-score';

export interface Confidence {
  /** The measure's value (margin: higher is more confident; entropy: lower is). */
  value: number;
  confident: boolean;
  /** Why the scores could not be measured (then `confident` is false). */
  unmeasurable?: Unmeasurable;
}

export interface RouteDecision {
  route: Route;
  /** The confidence measure's value for this request (see Confidence.value for its direction). */
  confidence: number;
  unmeasurable?: Unmeasurable;
}

/** Softmax of scores[0..m) / temperature, in float64, shifted by the maximum so large scores cannot overflow. */
export function softmax(scores: ArrayLike<number>, m: number, temperature: number): Float64Array {
  const p = new Float64Array(m);
  let max = -Infinity;
  for (let j = 0; j < m; j++) max = Math.max(max, scores[j]!);
  let sum = 0;
  for (let j = 0; j < m; j++) {
    p[j] = Math.exp((scores[j]! - max) / temperature);
    sum += p[j]!;
  }
  for (let j = 0; j < m; j++) p[j]! /= sum;
  return p;
}

/** Top-1 minus top-2: of the raw scores without a temperature, else of the softmax probabilities over the top m. */
export function marginOf(scores: ArrayLike<number>, m: number, temperature?: number): number {
  if (temperature === undefined) return scores[0]! - scores[1]!;
  const p = softmax(scores, m, temperature);
  return p[0]! - p[1]!;
}

/** Entropy of the softmax over the top m scores, divided by ln(m): in [0, 1], 0 when one item takes all the mass. */
export function normalisedEntropyOf(scores: ArrayLike<number>, m: number, temperature: number): number {
  const p = softmax(scores, m, temperature);
  let h = 0;
  for (const q of p) if (q > 0) h -= q * Math.log(q);
  // Rounding can put a uniform distribution a hair above ln(m).
  return Math.min(1, h / Math.log(m));
}

/** The cheap path's confidence from its top scores (best first), by the configured measure and threshold. */
export function measureConfidence(scores: ArrayLike<number>, settings: ConfidenceSettings): Confidence {
  const { measure, threshold, temperature } = settings;
  const leastConfident = measure === 'margin' ? 0 : 1;
  if (scores.length < 2) return { value: leastConfident, confident: false, unmeasurable: 'too-few-scores' };
  const m = Math.min(settings.topM, scores.length);
  // The raw margin reads only the top two; the softmax measures read the top m.
  const read = measure === 'margin' && temperature === undefined ? 2 : m;
  for (let j = 0; j < read; j++)
    if (!Number.isFinite(scores[j]!))
      return { value: leastConfident, confident: false, unmeasurable: 'non-finite-score' };
  if (measure === 'margin') {
    const value = marginOf(scores, m, temperature);
    return { value, confident: value >= threshold };
  }
  const value = normalisedEntropyOf(scores, m, temperature ?? 1);
  return { value, confident: value <= threshold };
}

export class AdaptiveRouter {
  readonly mode: RouterMode;
  private readonly tally: Record<Route, number> = { cheap: 0, cascade: 0, 'cheap-budget': 0 };

  constructor(
    readonly settings: RouterSettings,
    /** The expensive path's budget; only `routed` mode takes from it. */
    private readonly bucket: TokenBucket,
  ) {
    this.mode = settings.mode;
  }

  /**
   * The route of one request from the cheap path's top scores (best first). `routed`: confident -> cheap (no token
   * taken); otherwise a token -> cascade, no token -> cheap-budget. `always-cheap` -> cheap; `always-cascade` ->
   * cascade without taking tokens (the unbounded cascade-only baseline). Confidence is measured in every mode, so
   * the baselines log what the router would have seen.
   */
  route(cheapScores: ArrayLike<number>): RouteDecision {
    const c = measureConfidence(cheapScores, this.settings.confidence);
    let route: Route;
    switch (this.mode) {
      case 'always-cheap':
        route = 'cheap';
        break;
      case 'always-cascade':
        route = 'cascade';
        break;
      case 'routed':
        route = c.confident ? 'cheap' : this.bucket.tryTake() ? 'cascade' : 'cheap-budget';
        break;
    }
    this.tally[route] += 1;
    return c.unmeasurable
      ? { route, confidence: c.value, unmeasurable: c.unmeasurable }
      : { route, confidence: c.value };
  }

  /** Requests routed so far, per route (a copy). */
  counts(): Record<Route, number> {
    return { ...this.tally };
  }

  /** Tokens left in the expensive path's budget now, for metrics. */
  budgetAvailable(): number {
    return this.bucket.available();
  }
}

/** A router with its own bucket, built from parsed settings (router-config.ts `routerSettings`). */
export function createRouter(settings: RouterSettings, now?: () => number): AdaptiveRouter {
  const { ratePerSecond, burst } = settings.budget;
  return new AdaptiveRouter(settings, new TokenBucket(ratePerSecond, burst, now));
}
