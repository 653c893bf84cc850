/**
 * Canary analysis as a pure function: the canary's and the baseline's figures over the same window → pass, fail or
 * inconclusive, with one line per check. "Too little traffic" is its own outcome and never a pass (the fault behind
 * flagger#1035/#1011/#1581); any failed check fails the analysis, whatever the others say (argo-rollouts#1411).
 */
import type { AnalysisConfig } from './config';

/** What one model version served during an analysis window (from the serving tier's metrics). */
export interface VersionWindow {
  requests: number;
  errors: number;
  p99Ms: number;
  /** Recommendations that received feedback: clicks and impressions without a click. */
  clicks: number;
  impressions: number;
}

export interface AnalysisCheck {
  name: 'traffic' | 'error-rate' | 'p99-latency' | 'click-through';
  outcome: 'pass' | 'fail' | 'inconclusive';
  detail: string;
}

export interface AnalysisResult {
  outcome: 'pass' | 'fail' | 'inconclusive';
  checks: AnalysisCheck[];
  summary: string;
  canary: VersionWindow & { errorRate: number; ctr: number };
  baseline: VersionWindow & { errorRate: number; ctr: number };
}

const rate = (num: number, den: number) => (den > 0 ? num / den : 0);
const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

/** Standard normal CDF (Abramowitz–Stegun 7.1.26 via erf; |error| < 1.5e-7). */
export function normalCdf(z: number): number {
  const t = 1 / (1 + 0.3275911 * (Math.abs(z) / Math.SQRT2));
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-(z * z) / 2);
  return z >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

/** One-sided two-proportion z-test, H1: p1 < p2. Returns the p-value (1 when there is no variance to test). */
export function pValueLower(x1: number, n1: number, x2: number, n2: number): number {
  const pooled = (x1 + x2) / (n1 + n2);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  if (!(se > 0)) return x1 / n1 < x2 / n2 ? 0 : 1;
  return normalCdf((x1 / n1 - x2 / n2) / se);
}

export function analyseCanary(canary: VersionWindow, baseline: VersionWindow, cfg: AnalysisConfig): AnalysisResult {
  const c = {
    ...canary,
    errorRate: rate(canary.errors, canary.requests),
    ctr: rate(canary.clicks, canary.impressions),
  };
  const b = {
    ...baseline,
    errorRate: rate(baseline.errors, baseline.requests),
    ctr: rate(baseline.clicks, baseline.impressions),
  };
  const checks: AnalysisCheck[] = [];

  const enoughRequests = c.requests >= cfg.minRequests && b.requests >= cfg.minRequests;
  checks.push({
    name: 'traffic',
    outcome: enoughRequests ? 'pass' : 'inconclusive',
    detail: `canary ${c.requests} / baseline ${b.requests} requests (need ${cfg.minRequests} each)`,
  });

  // Errors and latency are judged as soon as the canary has enough requests: a broken canary must not wait for the
  // baseline's sample to fill up.
  if (c.requests >= cfg.minRequests) {
    const limit = Math.max(cfg.maxErrorRate, b.errorRate + cfg.maxErrorRate);
    checks.push({
      name: 'error-rate',
      outcome: c.errorRate <= limit ? 'pass' : 'fail',
      detail: `canary ${pct(c.errorRate)} (${c.errors}/${c.requests}) vs baseline ${pct(b.errorRate)}; limit ${pct(limit)}`,
    });
    const p99Limit = Math.min(cfg.maxP99Ms, b.requests > 0 ? b.p99Ms * cfg.maxP99Ratio + cfg.p99SlackMs : cfg.maxP99Ms);
    checks.push({
      name: 'p99-latency',
      outcome: c.p99Ms <= p99Limit ? 'pass' : 'fail',
      detail: `canary p99 ${c.p99Ms.toFixed(2)} ms vs baseline ${b.p99Ms.toFixed(2)} ms; limit ${p99Limit.toFixed(2)} ms`,
    });
  }

  // Without clicks on the baseline there is nothing to compare with (no feedback flowing is not "no difference").
  if (c.impressions >= cfg.minFeedback && b.impressions >= cfg.minFeedback && b.clicks >= cfg.minClicks) {
    const p = pValueLower(c.clicks, c.impressions, b.clicks, b.impressions);
    const drop = b.ctr > 0 ? 1 - c.ctr / b.ctr : 0;
    const worse = p < cfg.alpha && drop >= cfg.minCtrDrop;
    checks.push({
      name: 'click-through',
      outcome: worse ? 'fail' : 'pass',
      detail:
        `canary CTR ${pct(c.ctr)} (${c.clicks}/${c.impressions}) vs baseline ${pct(b.ctr)} (${b.clicks}/${b.impressions}); ` +
        `drop ${pct(drop)}, one-sided p=${p.toExponential(2)} (fail if p < ${cfg.alpha} and drop ≥ ${pct(cfg.minCtrDrop)})`,
    });
  } else {
    checks.push({
      name: 'click-through',
      outcome: 'inconclusive',
      detail:
        `feedback canary ${c.impressions} / baseline ${b.impressions} answers (need ${cfg.minFeedback} each), ` +
        `baseline clicks ${b.clicks} (need ${cfg.minClicks})`,
    });
  }

  const failed = checks.filter((x) => x.outcome === 'fail');
  const open = checks.filter((x) => x.outcome === 'inconclusive');
  const outcome = failed.length > 0 ? 'fail' : open.length > 0 ? 'inconclusive' : 'pass';
  const summary =
    outcome === 'fail'
      ? `fail: ${failed.map((x) => `${x.name} (${x.detail})`).join('; ')}`
      : outcome === 'inconclusive'
        ? `not enough traffic: ${open.map((x) => x.detail).join('; ')}`
        : `pass: error rate ${pct(c.errorRate)}, p99 ${c.p99Ms.toFixed(1)} ms, CTR ${pct(c.ctr)} vs ${pct(b.ctr)}`;
  return { outcome, checks, summary, canary: c, baseline: b };
}
