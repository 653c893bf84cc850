/**
 * Per-version online metrics from the serving tier's Prometheus text, for canary analysis: parse a scrape, sum the
 * replicas of an environment into one snapshot per model version, and turn two snapshots into the statistics of the
 * window between them (error rate, p50/p99 latency interpolated from histogram buckets, click-through). Pure and
 * free of Node built-ins, so workflow code may import it; the scraping itself is activities/deploy.ts.
 */

/** Cumulative counters of one version, summed over replicas (JSON-safe: no Infinity). */
export interface VersionCounters {
  /** Recommend calls answered successfully. */
  requests: number;
  /** Recommend calls answered with an error (any status). */
  errors: number;
  fallbacks: number;
  /** Answers that feedback can name (the click-through denominator). */
  eligible: number;
  /** Attributed feedback events by event label (`click`, `impression`, ...). */
  feedback: Record<string, number>;
  /** Recommend latency histogram: finite upper bounds in seconds, and cumulative counts per bound then +Inf. */
  latency: { bounds: number[]; cumulative: number[] };
}

export interface MetricsSnapshot {
  /** ISO-8601 time of the scrape. */
  at: string;
  versions: Record<string, VersionCounters>;
}

export interface WindowStats {
  /** Recommend calls in the window, answered or failed. */
  requests: number;
  errors: number;
  /** errors / requests; 0 without requests. */
  errorRate: number;
  fallbacks: number;
  /** Latency quantiles in milliseconds over the window; null without answered requests. */
  p50Ms: number | null;
  p99Ms: number | null;
  clicks: number;
  /** Successful answers feedback could name. */
  eligible: number;
  /** clicks / eligible; null without eligible answers. */
  ctr: number | null;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const unescape = (v: string) => v.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));

/** The samples of a Prometheus text exposition whose metric name starts with `prefix`. */
export function parsePrometheus(text: string, prefix = 'recsys_'): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const brace = line.indexOf('{');
    const close = line.lastIndexOf('}');
    let name: string;
    let rest: string;
    const labels: Record<string, string> = {};
    if (brace >= 0 && close > brace) {
      name = line.slice(0, brace);
      for (const m of line.slice(brace + 1, close).matchAll(LABEL)) labels[m[1]!] = unescape(m[2]!);
      rest = line.slice(close + 1);
    } else {
      const sp = line.indexOf(' ');
      name = line.slice(0, sp);
      rest = line.slice(sp);
    }
    const raw = rest.trim().split(/\s+/)[0] ?? '';
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (name !== '' && !Number.isNaN(value)) out.push({ name, labels, value });
  }
  return out;
}

/** A version's counters before anything was counted. */
export const emptyCounters = (): VersionCounters => ({
  requests: 0,
  errors: 0,
  fallbacks: 0,
  eligible: 0,
  feedback: {},
  latency: { bounds: [], cumulative: [] },
});

/**
 * Adds one replica's scrape into `into` (by version), for `versions` only (all versions when undefined). Latency
 * buckets are matched by bound, so replicas with the same buckets add up exactly.
 */
export function addScrape(
  into: Record<string, VersionCounters>,
  samples: readonly Sample[],
  versions?: readonly string[],
): Record<string, VersionCounters> {
  const wanted = versions && new Set(versions);
  const of = (version: string | undefined): VersionCounters | undefined => {
    if (version === undefined || version === '' || (wanted && !wanted.has(version))) return undefined;
    return (into[version] ??= emptyCounters());
  };
  const buckets = new Map<string, Map<number, number>>();
  for (const s of samples) {
    const l = s.labels;
    switch (s.name) {
      case 'recsys_requests_total':
        if (l.method === 'Recommend') {
          const c = of(l.version);
          if (c) c.requests += s.value;
        }
        break;
      case 'recsys_request_errors_total':
        if (l.method === 'Recommend') {
          const c = of(l.version);
          if (c) c.errors += s.value;
        }
        break;
      case 'recsys_fallbacks_total': {
        const c = of(l.version);
        if (c) c.fallbacks += s.value;
        break;
      }
      case 'recsys_feedback_eligible_total': {
        const c = of(l.version);
        if (c) c.eligible += s.value;
        break;
      }
      case 'recsys_feedback_total': {
        const c = of(l.version);
        if (c && l.event) c.feedback[l.event] = (c.feedback[l.event] ?? 0) + s.value;
        break;
      }
      case 'recsys_request_duration_seconds_bucket':
        if (l.method === 'Recommend' && of(l.version) && l.le !== undefined) {
          let b = buckets.get(l.version!);
          if (!b) buckets.set(l.version!, (b = new Map<number, number>()));
          const le = l.le === '+Inf' ? Infinity : Number(l.le);
          b.set(le, (b.get(le) ?? 0) + s.value);
        }
        break;
    }
  }
  for (const [version, b] of buckets) {
    const c = into[version]!;
    const merged = new Map<number, number>();
    c.latency.bounds.forEach((le, i) => merged.set(le, c.latency.cumulative[i] ?? 0));
    if (c.latency.cumulative.length > c.latency.bounds.length)
      merged.set(Infinity, c.latency.cumulative[c.latency.bounds.length]!);
    for (const [le, n] of b) merged.set(le, (merged.get(le) ?? 0) + n);
    const les = [...merged.keys()].sort((x, y) => x - y);
    const finite = les.filter((le) => Number.isFinite(le));
    c.latency = {
      bounds: finite,
      cumulative: [...finite.map((le) => merged.get(le)!), merged.get(Infinity) ?? merged.get(finite.at(-1)!) ?? 0],
    };
  }
  return into;
}

/**
 * The q-quantile (0..1) of a cumulative histogram, in the histogram's unit, interpolated linearly inside the bucket
 * that holds it (as Prometheus' histogram_quantile does; the first bucket starts at 0). A quantile that falls in the
 * +Inf bucket is reported as the largest finite bound (a lower bound of the truth). Undefined without observations.
 */
export function histogramQuantile(q: number, bounds: readonly number[], cumulative: readonly number[]): number | null {
  if (!(q >= 0 && q <= 1)) throw new Error(`quantile must be in [0, 1], got ${q}`);
  const total = cumulative[bounds.length] ?? cumulative.at(-1) ?? 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    const upTo = cumulative[i]!;
    if (upTo >= rank && upTo > 0) {
      const below = i === 0 ? 0 : cumulative[i - 1]!;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      const upper = bounds[i]!;
      if (upTo === below) return upper;
      return lower + ((upper - lower) * (rank - below)) / (upTo - below);
    }
  }
  return bounds.at(-1) ?? null;
}

/** after - before per version, never negative (a replica that restarted starts its counters again from 0). */
function delta(before: VersionCounters | undefined, after: VersionCounters): VersionCounters {
  const b = before ?? emptyCounters();
  const d = (x: number, y: number) => Math.max(0, x - y);
  const feedback: Record<string, number> = {};
  for (const [e, n] of Object.entries(after.feedback)) feedback[e] = d(n, b.feedback[e] ?? 0);
  const prev = new Map(b.latency.bounds.map((le, i) => [le, b.latency.cumulative[i] ?? 0]));
  const prevInf = b.latency.cumulative[b.latency.bounds.length] ?? 0;
  const bounds = after.latency.bounds;
  const cumulative = after.latency.cumulative.map((n, i) =>
    d(n, i < bounds.length ? (prev.get(bounds[i]!) ?? 0) : prevInf),
  );
  // Clamping per bucket can break monotonicity after a restart; keep the counts cumulative.
  for (let i = 1; i < cumulative.length; i++) cumulative[i] = Math.max(cumulative[i]!, cumulative[i - 1]!);
  return {
    requests: d(after.requests, b.requests),
    errors: d(after.errors, b.errors),
    fallbacks: d(after.fallbacks, b.fallbacks),
    eligible: d(after.eligible, b.eligible),
    feedback,
    latency: { bounds: [...bounds], cumulative },
  };
}

const ms = (s: number | null) => (s === null ? null : s * 1000);

/** The statistics of each version between two snapshots of the same environment (versions seen in `after`). */
export function windowStats(before: MetricsSnapshot, after: MetricsSnapshot): Record<string, WindowStats> {
  const out: Record<string, WindowStats> = {};
  for (const [version, a] of Object.entries(after.versions)) {
    const w = delta(before.versions[version], a);
    const calls = w.requests + w.errors;
    const { bounds, cumulative } = w.latency;
    const clicks = w.feedback.click ?? 0;
    out[version] = {
      requests: calls,
      errors: w.errors,
      errorRate: calls > 0 ? w.errors / calls : 0,
      fallbacks: w.fallbacks,
      p50Ms: ms(histogramQuantile(0.5, bounds, cumulative)),
      p99Ms: ms(histogramQuantile(0.99, bounds, cumulative)),
      clicks,
      eligible: w.eligible,
      ctr: w.eligible > 0 ? clicks / w.eligible : null,
    };
  }
  return out;
}
