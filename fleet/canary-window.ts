/**
 * Per-version statistics of a canary window from the stack's Prometheus, as Argo Rollouts and Flagger do it: PromQL
 * `increase()` over the window, summed over the environment's replicas. Prometheus keeps every replica's samples, and
 * increase() treats a counter that dropped as a restart, so a replica killed and restarted mid-window still counts what
 * it served before and after. Before asking, it waits until Prometheus has scraped every replica past the window's end,
 * so the last second of the window is not missing. The figures are estimates (increase() extrapolates to the window's
 * edges), which is what every Prometheus-based analysis works with.
 */
import type { PrometheusClient } from '../lib/prometheus';
import { PrometheusError, promAlternatives, promString } from '../lib/prometheus';
import { sleep } from '../lib/time';
import type { EnvName } from './environments';
import type { WindowStats } from './version-metrics';

/** The methods whose calls are Recommend calls, over gRPC and HTTP (serving/recommender-core.ts' Method). */
export const RECOMMEND_METHODS = ['Recommend', 'http_recommend'] as const;

export interface CanaryWindowInput {
  env: EnvName;
  model: string;
  versions: readonly string[];
  sinceMs: number;
  untilMs: number;
}

/** How long to wait for Prometheus to scrape past the window's end (it scrapes every second). */
const SCRAPE_WAIT_MS = 15_000;

/** Waits until every target of `env` has a sample at or after `untilMs`; fails when there is none or it never comes. */
export async function waitForScrapes(prom: PrometheusClient, env: EnvName, untilMs: number): Promise<number> {
  const expr = `min(timestamp(up{env=${promString(env)}}))`;
  const deadline = Date.now() + SCRAPE_WAIT_MS;
  for (;;) {
    const [oldest] = await prom.query(expr);
    if (oldest && oldest.value * 1000 >= untilMs) {
      const [n] = await prom.query(`count(up{env=${promString(env)}})`);
      return n?.value ?? 0;
    }
    if (Date.now() > deadline)
      throw new PrometheusError(
        oldest
          ? `Prometheus at ${prom.url} has not scraped every ${env} replica since ${new Date(untilMs).toISOString()}`
          : `Prometheus at ${prom.url} scrapes no ${env} replica (its targets come from the fleet's ` +
              'prometheus/targets/*.json under the stack directory)',
      );
    await sleep(250);
  }
}

const byVersion = (samples: { labels: Record<string, string>; value: number }[]): Map<string, number> =>
  new Map(samples.map((s) => [s.labels.version ?? '', s.value]));

const count = (m: Map<string, number>, v: string): number => Math.max(0, Math.round(m.get(v) ?? 0));
const quantileMs = (m: Map<string, number>, v: string): number | null => {
  const s = m.get(v);
  return s === undefined || !Number.isFinite(s) ? null : s * 1000;
};

/** The PromQL of each figure, for a selector and a range in seconds (exported for the tests and the README). */
export function canaryQueries(selector: string, rangeSeconds: number) {
  const calls = `${selector},method=~${promAlternatives(RECOMMEND_METHODS)}`;
  const inc = (metric: string, sel: string) => `sum by (version) (increase(${metric}{${sel}}[${rangeSeconds}s]))`;
  const quantile = (q: number) =>
    `histogram_quantile(${q}, sum by (version, le) (increase(recsys_request_duration_seconds_bucket{${calls}}[${rangeSeconds}s])))`;
  return {
    answered: inc('recsys_requests_total', calls),
    errors: inc('recsys_request_errors_total', calls),
    fallbacks: inc('recsys_fallbacks_total', selector),
    eligible: inc('recsys_feedback_eligible_total', selector),
    clicks: inc('recsys_feedback_total', `${selector},event="click"`),
    p50: quantile(0.5),
    p99: quantile(0.99),
  };
}

export async function canaryWindowStats(
  prom: PrometheusClient,
  input: CanaryWindowInput,
): Promise<Record<string, WindowStats>> {
  await waitForScrapes(prom, input.env, input.untilMs);
  const selector =
    `env=${promString(input.env)},model=${promString(input.model)},` + `version=~${promAlternatives(input.versions)}`;
  const range = Math.max(1, Math.ceil((input.untilMs - input.sinceMs) / 1000));
  const q = canaryQueries(selector, range);
  const at = input.untilMs;
  const [answered, errors, fallbacks, eligible, clicks, p50, p99] = await Promise.all(
    [q.answered, q.errors, q.fallbacks, q.eligible, q.clicks, q.p50, q.p99].map(async (e) =>
      byVersion(await prom.query(e, at)),
    ),
  );
  const out: Record<string, WindowStats> = {};
  for (const v of input.versions) {
    const failed = count(errors!, v);
    const calls = count(answered!, v) + failed;
    const clickCount = count(clicks!, v);
    const eligibleCount = count(eligible!, v);
    out[v] = {
      requests: calls,
      errors: failed,
      errorRate: calls > 0 ? failed / calls : 0,
      fallbacks: count(fallbacks!, v),
      p50Ms: quantileMs(p50!, v),
      p99Ms: quantileMs(p99!, v),
      clicks: clickCount,
      eligible: eligibleCount,
      ctr: eligibleCount > 0 ? clickCount / eligibleCount : null,
    };
  }
  return out;
}
