/** Exact latency quantiles and per-version tallies of a simulation run (client side). */

/** The q-quantile (0..1) of the samples by nearest rank; null when there are none. Sorts `samples` in place. */
export function quantile(samples: number[], q: number): number | null {
  if (samples.length === 0) return null;
  samples.sort((a, b) => a - b);
  const rank = Math.min(samples.length - 1, Math.max(0, Math.ceil(q * samples.length) - 1));
  return samples[rank]!;
}

export interface VersionTally {
  requests: number;
  clicks: number;
  impressions: number;
  /** Answers with at least one of the user's held-out items. */
  hits: number;
  latenciesMs: number[];
}

export const newTally = (): VersionTally => ({ requests: 0, clicks: 0, impressions: 0, hits: 0, latenciesMs: [] });

export interface VersionSummary {
  requests: number;
  clicks: number;
  impressions: number;
  /** clicks / requests: answers that led to a (delivered) click. */
  ctr: number;
  /** Answers with at least one held-out item in the top k. */
  hits: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export function summarize(t: VersionTally): VersionSummary {
  return {
    requests: t.requests,
    clicks: t.clicks,
    impressions: t.impressions,
    ctr: t.requests > 0 ? t.clicks / t.requests : 0,
    hits: t.hits,
    p50Ms: quantile(t.latenciesMs, 0.5),
    p99Ms: quantile(t.latenciesMs, 0.99),
  };
}
