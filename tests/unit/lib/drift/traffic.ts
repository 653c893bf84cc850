/**
 * Synthetic served traffic at the level of window summaries, for the drift unit tests and bench/drift-detection.ts:
 * bucket counts drawn multinomially from a reference shaped like real traffic (popularity deciles of a Zipf
 * catalogue, history lengths, CTR ~0.12, normal score distributions), optionally shifted by a given size.
 *
 * Draws are independent, as the chi-square test assumes; real traffic is clustered (one user's history items move
 * together), so these summaries are kinder to the test than real logs are: the effect-size thresholds carry the
 * weight there.
 */
import { regularisedGammaQ } from '../../../../lib/drift/statistics';
import {
  BUCKETS,
  HISTORY_EDGES,
  popularityDeciles,
  POPULARITY_BUCKETS,
  SCORE_EDGES,
  SIGNALS,
  UNKNOWN_ITEM_BUCKET,
  type SignalName,
  type WindowSummary,
} from '../../../../lib/drift/summary';

export type Rng = () => number;

// Looked up once: a global lookup inside jest's vm context costs ~25x a local one in these hot loops.
const { imul, log, cos, sqrt, PI } = Math;

/** mulberry32: a small seeded PRNG with uniform output in [0, 1). */
export function seeded(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rng: Rng): number {
  const u = 1 - rng();
  return sqrt(-2 * log(u)) * cos(2 * PI * rng());
}

/** Multinomial counts of n draws, one draw at a time (exact; O(n log k)). */
export function multinomialExact(rng: Rng, n: number, p: readonly number[]): number[] {
  const total = p.reduce((a, b) => a + b, 0);
  const cdf: number[] = [];
  let acc = 0;
  for (const x of p) cdf.push((acc += x / total));
  const out = new Array<number>(p.length).fill(0);
  for (let i = 0; i < n; i++) {
    const u = rng();
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (u < cdf[mid]!) hi = mid;
      else lo = mid + 1;
    }
    out[lo]!++;
  }
  return out;
}

/** A binomial draw: exact inversion for a small mean, the normal approximation above (np(1-p) >= 30). */
function binomial(rng: Rng, n: number, p: number): number {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  if (p > 0.5) return n - binomial(rng, n, 1 - p);
  const mean = n * p;
  const variance = mean * (1 - p);
  if (variance >= 30) return Math.min(n, Math.max(0, Math.round(mean + Math.sqrt(variance) * gaussian(rng))));
  // Inversion from k = 0 (mean < 60 here, so the loop is short).
  const u = rng();
  let k = 0;
  let pk = Math.pow(1 - p, n);
  let cdf = pk;
  while (u > cdf && k < n) {
    pk *= ((n - k) / (k + 1)) * (p / (1 - p));
    k++;
    cdf += pk;
    if (pk < 1e-300 && cdf > 0.999999999) break;
  }
  return k;
}

/** Multinomial counts by conditional binomials: O(k) per call, approximate for large counts (for the bench). */
export function multinomialFast(rng: Rng, n: number, p: readonly number[]): number[] {
  let left = n;
  let mass = p.reduce((a, b) => a + b, 0);
  return p.map((x, i) => {
    if (i === p.length - 1) return left;
    const c = mass > 0 ? binomial(rng, left, Math.min(1, x / mass)) : 0;
    left -= c;
    mass -= x;
    return c;
  });
}

const normalCdf = (x: number): number => {
  // Φ(x) = erfc(-x / √2) / 2 and erfc(y) = Q(1/2, y²) for y >= 0.
  const q = regularisedGammaQ(0.5, (x * x) / 2) / 2;
  return x >= 0 ? 1 - q : q;
};

/** Probabilities of the score buckets for a normal distribution of scores. */
export function scoreBuckets(mean: number, sd: number): number[] {
  const out: number[] = [];
  let prev = 0;
  for (const edge of SCORE_EDGES) {
    const c = normalCdf((edge - mean) / sd);
    out.push(c - prev);
    prev = c;
  }
  out.push(1 - prev);
  return out;
}

/** Zipf weights 1/rank^s over a catalogue. */
const zipf = (items: number, s: number) => Array.from({ length: items }, (_, i) => 1 / (i + 1) ** s);

/**
 * Popularity-decile probabilities of items drawn with Zipf(s) from a catalogue whose deciles come from training
 * interactions with Zipf(1); `unknown` of the mass goes to items the dataset does not have.
 */
export function popularityBuckets(s: number, unknown: number, items = 3706): number[] {
  const training = zipf(items, 1);
  const deciles = popularityDeciles(Object.fromEntries(training.map((w, i) => [`i${i}`, Math.round(w * 1e6)])));
  const drawn = zipf(items, s);
  const total = drawn.reduce((a, b) => a + b, 0);
  const out = new Array<number>(POPULARITY_BUCKETS).fill(0);
  drawn.forEach((w, i) => (out[deciles.get(`i${i}`)!]! += ((1 - unknown) * w) / total));
  out[UNKNOWN_ITEM_BUCKET] = unknown;
  return out;
}

/** A traffic model: per signal the bucket probabilities, and how many counts per request each signal gets. */
export interface Traffic {
  p: Record<SignalName, number[]>;
  /** Counts per request: history items logged, items per answer, feedback events, answers with items. */
  historyItems: number;
  recommended: number;
  feedbackPerRequest: number;
}

const share = (x: number) => [1 - x, x];

/** The reference traffic: an ML-1M-like catalogue, CTR 0.12, scores N(4, 0.8) top-1 and N(2, 0.5) mean. */
export function referenceTraffic(): Traffic {
  return {
    p: {
      'user-unknown': share(0.08),
      // 0, 1, 2-4, 5-9, 10-19, 20-49, 50+ items of history.
      'history-length': [0.08, 0.05, 0.12, 0.15, 0.2, 0.25, 0.15],
      'requested-popularity': popularityBuckets(1, 0.01),
      // Recommenders favour the head more than users do.
      'recommended-popularity': popularityBuckets(1.2, 0),
      'feedback-new-items': share(0.01),
      'score-top1': scoreBuckets(4, 0.8),
      'score-mean': scoreBuckets(2, 0.5),
      ctr: share(0.12),
      fallback: share(0.005),
    },
    historyItems: 10,
    recommended: 10,
    feedbackPerRequest: 0.4,
  };
}

export const SHIFT_KINDS = ['popularity', 'user-mix', 'new-items', 'ctr-drop', 'score'] as const;
export type ShiftKind = (typeof SHIFT_KINDS)[number];

/** What each shift of size s does, for the bench's legend. */
export const SHIFT_MEANING: Record<ShiftKind, string> = {
  popularity: 'a share s of requested and recommended items comes from the long tail (deciles 8-9)',
  'user-mix': 'a share s of requests comes from new users (unknown, history of 0-1 items)',
  'new-items': 'a share s of feedback events is on items the dataset does not have',
  'ctr-drop': 'CTR falls by a factor (1 - s), 0.12 -> 0.12 (1 - s)',
  score: 'top-1 and mean scores fall by a factor (1 - s) (same spread)',
};

const mix = (p: readonly number[], q: readonly number[], s: number) => p.map((x, i) => (1 - s) * x + s * q[i]!);
const oneHot = (k: number, at: Record<number, number>) => Array.from({ length: k }, (_, i) => at[i] ?? 0);

/** The reference traffic shifted by size s (0: unchanged). */
export function shifted(base: Traffic, kind: ShiftKind, s: number): Traffic {
  const p = { ...base.p };
  const t: Traffic = { ...base, p };
  if (s === 0) return t;
  switch (kind) {
    case 'popularity': {
      const tail = oneHot(POPULARITY_BUCKETS, { 8: 0.5, 9: 0.5 });
      p['requested-popularity'] = mix(p['requested-popularity'], tail, s);
      p['recommended-popularity'] = mix(p['recommended-popularity'], tail, s);
      break;
    }
    case 'user-mix':
      p['user-unknown'] = mix(p['user-unknown'], [0, 1], s);
      p['history-length'] = mix(p['history-length'], oneHot(HISTORY_EDGES.length, { 0: 0.7, 1: 0.3 }), s);
      t.historyItems = base.historyItems * (1 - s);
      break;
    case 'new-items':
      p['feedback-new-items'] = mix(p['feedback-new-items'], [0, 1], s);
      break;
    case 'ctr-drop':
      p.ctr = share(p.ctr[1]! * (1 - s));
      break;
    case 'score':
      p['score-top1'] = scoreBuckets(4 * (1 - s), 0.8);
      p['score-mean'] = scoreBuckets(2 * (1 - s), 0.5);
      break;
  }
  return t;
}

/** How many counts each signal gets in a window of `requests`. */
function totals(t: Traffic, requests: number): Record<SignalName, number> {
  const answersWithItems = Math.round(requests * (1 - t.p.fallback[1]!));
  const feedback = Math.round(requests * t.feedbackPerRequest);
  return {
    'user-unknown': requests,
    'history-length': requests,
    'requested-popularity': Math.round(requests * t.historyItems),
    'recommended-popularity': answersWithItems * t.recommended,
    'feedback-new-items': feedback,
    'score-top1': answersWithItems,
    'score-mean': answersWithItems,
    ctr: requests,
    fallback: requests,
  };
}

/** One window's summary of `requests` requests drawn from `t`. */
export function sampleWindow(
  rng: Rng,
  t: Traffic,
  requests: number,
  opts: { exact?: boolean; startMs?: number; intervalMs?: number } = {},
): WindowSummary {
  const draw = opts.exact ? multinomialExact : multinomialFast;
  const n = totals(t, requests);
  const counts = Object.fromEntries(SIGNALS.map((s) => [s, draw(rng, n[s], t.p[s])])) as Record<SignalName, number[]>;
  for (const s of SIGNALS) if (counts[s].length !== BUCKETS[s]) throw new Error(`${s}: wrong bucket count`);
  const startMs = opts.startMs ?? 0;
  return {
    summaryVersion: 1,
    model: 'm',
    env: 'production',
    window: { startMs, endMs: startMs + (opts.intervalMs ?? 3_600_000) },
    reference: { datasetUri: 's3://recsys/datasets/m/v1', datasetVersion: 'v1' },
    requests,
    feedback: n['feedback-new-items'],
    versions: { '1': requests },
    chunks: 1,
    counts,
    concentration: { distinctItems: 0, coverage: 0, entropyBits: 0 },
  };
}
