/**
 * What one drift window of served traffic is reduced to: small bucket counts per signal, mergeable by adding them
 * (as whylogs merges hourly profiles), so a baseline is the sum of its windows and no raw log line is read twice.
 * Written by the summarising activity to `s3://<bucket>/drift/<model>/<env>/windows/<start>.json` and read back by
 * the evaluation; pure and free of Node built-ins (workflow code may import it).
 *
 * The buckets come from the reference dataset version (the champion's), never from the traffic itself:
 * - item popularity deciles by training interaction mass (decile 0: the head items that take the first 10% of
 *   training interactions; decile 9: the long tail), plus one bucket for items the dataset does not have. Raw item
 *   ids are never compared: with a Zipf catalogue their sampling noise alone exceeds every threshold.
 * - known users: the raw user ids of the dataset version.
 * - scores: fixed, model-independent log-scale bins (SCORE_EDGES), merged into the baseline's deciles when judged.
 */

/** Signals whose confirmed drift retrains the model. */
export const RETRAIN_SIGNALS = [
  'user-unknown',
  'history-length',
  'requested-popularity',
  'recommended-popularity',
  'feedback-new-items',
  'score-top1',
  'score-mean',
  'ctr',
] as const;
/** Signals that alert operators but never retrain (a model cannot fix them). */
export const ALERT_SIGNALS = ['fallback'] as const;
export const SIGNALS = [...RETRAIN_SIGNALS, ...ALERT_SIGNALS] as const;
export type SignalName = (typeof SIGNALS)[number];

/** Lower edges of the history-length buckets: 0, 1, 2-4, 5-9, 10-19, 20-49, 50+. */
export const HISTORY_EDGES = [0, 1, 2, 5, 10, 20, 50] as const;
/** Popularity deciles 0..9, then items unknown to the dataset. */
export const POPULARITY_BUCKETS = 11;
export const UNKNOWN_ITEM_BUCKET = 10;
/**
 * Score bin edges: 0, then ±10^(e/10) for e in -30..30 (1e-3 .. 1e3), sorted. Bucket i holds scores in
 * [edge[i-1], edge[i]) with bucket 0 below the first edge and the last bucket at or above the last edge.
 */
export const SCORE_EDGES: readonly number[] = (() => {
  const pos = Array.from({ length: 61 }, (_, i) => 10 ** ((i - 30) / 10));
  return [...pos.map((x) => -x).reverse(), 0, ...pos];
})();
export const SCORE_BUCKETS = SCORE_EDGES.length + 1;

/** The number of buckets of each signal (a summary's count arrays have exactly this length). */
export const BUCKETS: Record<SignalName, number> = {
  'user-unknown': 2, // [known, unknown] per request
  'history-length': HISTORY_EDGES.length, // per request
  'requested-popularity': POPULARITY_BUCKETS, // per history item the request carried (logged, bounded)
  'recommended-popularity': POPULARITY_BUCKETS, // per recommended item
  'feedback-new-items': 2, // [in the catalogue, new] per feedback event
  'score-top1': SCORE_BUCKETS, // per answer with items
  'score-mean': SCORE_BUCKETS, // mean score of an answer's items
  ctr: 2, // [no click, clicked] per answer, joined with feedback on request_id
  fallback: 2, // [model, fallback] per answer
};

export interface WindowSummary {
  summaryVersion: 1;
  model: string;
  env: string;
  /** [startMs, endMs): records whose time_ms falls inside (feedback is read up to endMs + grace for the CTR join). */
  window: { startMs: number; endMs: number };
  /** The dataset version that defined the buckets. */
  reference: { datasetUri: string; datasetVersion: string };
  /** Recommend records in the window. */
  requests: number;
  /** Feedback records in the window. */
  feedback: number;
  /** Answers per model_version (canary and stable traffic told apart). */
  versions: Record<string, number>;
  /** Log chunks read. */
  chunks: number;
  /** Bucket counts per signal, BUCKETS[signal] long. */
  counts: Record<SignalName, number[]>;
  /** Concentration of recommendations (reported, not a trigger: each depends on the sample size). */
  concentration: { distinctItems: number; coverage: number; entropyBits: number };
}

export const emptyCounts = (): Record<SignalName, number[]> =>
  Object.fromEntries(SIGNALS.map((s) => [s, new Array<number>(BUCKETS[s]).fill(0)])) as Record<SignalName, number[]>;

/** Adds bucket counts of summaries (a baseline from its windows). */
export function mergeCounts(summaries: readonly Pick<WindowSummary, 'counts'>[]): Record<SignalName, number[]> {
  const out = emptyCounts();
  for (const s of summaries)
    for (const sig of SIGNALS) {
      const src = s.counts[sig];
      const dst = out[sig];
      for (let i = 0; i < dst.length; i++) dst[i]! += src?.[i] ?? 0;
    }
  return out;
}

/** The bucket of a history length. */
export function historyBucket(n: number): number {
  let i = HISTORY_EDGES.length - 1;
  while (i > 0 && n < HISTORY_EDGES[i]!) i--;
  return i;
}

/** The bucket of a score (binary search over SCORE_EDGES). */
export function scoreBucket(x: number): number {
  let lo = 0;
  let hi = SCORE_EDGES.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x >= SCORE_EDGES[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Popularity deciles of a catalogue from training interaction counts (raw item id -> count). */
export function popularityDeciles(itemCounts: Record<string, number>): Map<string, number> {
  const items = Object.entries(itemCounts).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let total = 0;
  for (const [, c] of items) total += c;
  const out = new Map<string, number>();
  let before = 0;
  for (const [id, c] of items) {
    out.set(id, total > 0 ? Math.min(9, Math.floor((before / total) * 10)) : 9);
    before += c;
  }
  return out;
}
