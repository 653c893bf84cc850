/**
 * Judges one window of served traffic against the baseline: per enabled signal an effect size against its threshold
 * and a test at the Bonferroni-corrected level (both must hold for a breach), then persistence over the last windows.
 * The verdict is small and JSON-safe: the monitor keeps the last ones in workflow state.
 *
 * - A window with fewer than `minRequests` requests is `insufficient-data`: never ok, never drift, and not counted
 *   among the m windows of the persistence rule.
 * - Distribution signals (history length, popularity, scores): Jensen-Shannon or PSI on the buckets, with the sampling
 *   allowance added to a Jensen-Shannon threshold; chi-square test of homogeneity. Scores are first merged from their
 *   fine bins into the reference's deciles (fixed, model-independent bins would leave most of them empty).
 * - Share signals (unknown users, new items in feedback, fallback answers): absolute change of the share; two-sided
 *   two-proportion z-test.
 * - CTR: relative drop (a rise is no drift), one-sided z-test.
 */
import {
  DISTRIBUTION_SIGNALS,
  FEEDBACK_SIGNALS,
  type DistributionSignal,
  type DriftConfig,
  type ShareSignal,
} from './config';
import {
  bucketPoints,
  chiSquareHomogeneity,
  histogramMoments,
  jensenShannon,
  jensenShannonAllowance,
  mergeBuckets,
  normalisedWasserstein,
  psi,
  quantileGroups,
  sum,
  twoProportionZTest,
} from './statistics';
import {
  BUCKETS,
  RETRAIN_SIGNALS,
  SCORE_EDGES,
  SIGNALS,
  UNKNOWN_ITEM_BUCKET,
  type SignalName,
  type WindowSummary,
} from './summary';

export type DriftStatus = 'ok' | 'warning' | 'drift' | 'insufficient-data';

export interface SignalResult {
  name: SignalName;
  role: 'retrain' | 'alert';
  /** What `value` measures. */
  metric: 'jensen-shannon' | 'psi' | 'share-change' | 'relative-drop';
  /** The effect size; null when it could not be computed (an empty side). */
  value: number | null;
  /** The configured threshold. */
  threshold: number;
  /** What `value` was compared with: the threshold plus the sampling allowance (Jensen-Shannon), else the threshold. */
  limit: number | null;
  pValue: number | null;
  /** pValue below alpha / enabled signals. */
  significant: boolean;
  /** value >= limit and significant, in a window with enough data. */
  breached: boolean;
  /** Sample sizes (buckets' totals) of the reference and of this window. */
  n: { reference: number; current: number };
  /** Why this signal could not be judged in this window. */
  insufficient?: string;
  /** Figures for humans, e.g. share before/after, long-tail share, mean score, normalised Wasserstein. */
  detail: Record<string, number | null>;
}

export interface WindowVerdict {
  windowStartMs: number;
  windowEndMs: number;
  status: DriftStatus;
  requests: number;
  feedback: number;
  signals: SignalResult[];
  /** Retrain signals breached in this window. */
  breached: SignalName[];
  /** Alert signals breached in this window. */
  alerts: SignalName[];
  /** Retrain signals breached in at least k of the last m evaluated windows, this one included. */
  confirmed: SignalName[];
  /** One line for humans. */
  reason: string;
}

export interface EvaluateWindowArgs {
  /** Merged bucket counts of the baseline windows. */
  reference: Record<SignalName, number[]>;
  current: WindowSummary;
  config: DriftConfig;
  /** Earlier windows' verdicts, oldest first (their `breached` lists are what persistence needs). */
  history: readonly WindowVerdict[];
}

const ALERT = new Set<SignalName>(SIGNALS.filter((s) => !(RETRAIN_SIGNALS as readonly string[]).includes(s)));
const FEEDBACK = new Set<SignalName>(FEEDBACK_SIGNALS);
const isDistribution = (s: SignalName): s is DistributionSignal =>
  (DISTRIBUTION_SIGNALS as readonly string[]).includes(s);

/** What a signal measures and its configured threshold. */
function settings(sig: SignalName, cfg: DriftConfig): { metric: SignalResult['metric']; threshold: number } {
  if (isDistribution(sig)) return cfg.signals[sig];
  if (sig === 'ctr') return { metric: 'relative-drop', threshold: cfg.signals.ctr.maxRelativeDrop };
  return { metric: 'share-change', threshold: cfg.signals[sig].maxChange };
}

/** What one count of each signal is (for reasons). */
const UNIT: Record<SignalName, string> = {
  'user-unknown': 'requests',
  'history-length': 'requests',
  'requested-popularity': 'history items',
  'recommended-popularity': 'recommended items',
  'feedback-new-items': 'feedback events',
  'score-top1': 'answers with items',
  'score-mean': 'answers with items',
  ctr: 'answers',
  fallback: 'answers',
};

const SCORE_POINTS = bucketPoints(SCORE_EDGES);

/** Rounded for the verdict (it is kept in workflow state); null for what is not a finite number. */
const r4 = (x: number): number | null => (Number.isFinite(x) ? Number(x.toPrecision(4)) : null);
const fmt = (x: number | null): string => (x === null ? 'n/a' : x === 0 ? '0' : String(Number(x.toPrecision(3))));
const fmtP = (p: number | null): string => (p === null ? 'n/a' : p < 1e-4 ? p.toExponential(0) : fmt(p));

function checkedCounts(counts: unknown, sig: SignalName, where: string): number[] {
  const field = `${where}.${sig}`;
  if (!Array.isArray(counts)) throw new Error(`${field} is missing (value: ${JSON.stringify(counts)})`);
  if (counts.length !== BUCKETS[sig])
    throw new Error(`${field} has ${counts.length} buckets, expected ${BUCKETS[sig]}`);
  const bad = counts.findIndex((c) => typeof c !== 'number' || !(c >= 0) || !Number.isFinite(c));
  if (bad >= 0) throw new Error(`${field}[${bad}] is not a count (value: ${JSON.stringify(counts[bad])})`);
  return counts as number[];
}

interface Judged {
  metric: SignalResult['metric'];
  value: number;
  threshold: number;
  limit: number;
  pValue: number;
  detail: Record<string, number>;
}

function judgeDistribution(sig: DistributionSignal, ref: number[], cur: number[], cfg: DriftConfig): Judged {
  const c = cfg.signals[sig];
  const detail: Record<string, number> = {};
  let a = ref;
  let b = cur;
  if (sig === 'score-top1' || sig === 'score-mean') {
    detail.meanBefore = histogramMoments(ref, SCORE_POINTS).mean;
    detail.meanAfter = histogramMoments(cur, SCORE_POINTS).mean;
    detail.wasserstein = normalisedWasserstein(ref, cur, SCORE_POINTS);
    const groups = quantileGroups(ref);
    a = mergeBuckets(ref, groups);
    b = mergeBuckets(cur, groups);
  } else if (sig === 'history-length') {
    detail.noHistoryBefore = ref[0]! / sum(ref);
    detail.noHistoryAfter = cur[0]! / sum(cur);
  } else {
    // Long tail: popularity deciles 8 and 9; unknown: items the dataset does not have.
    detail.longTailBefore = (ref[8]! + ref[9]!) / sum(ref);
    detail.longTailAfter = (cur[8]! + cur[9]!) / sum(cur);
    detail.unknownBefore = ref[UNKNOWN_ITEM_BUCKET]! / sum(ref);
    detail.unknownAfter = cur[UNKNOWN_ITEM_BUCKET]! / sum(cur);
  }
  const allowance = c.metric === 'jensen-shannon' ? jensenShannonAllowance(a, b) : 0;
  detail.allowance = allowance;
  return {
    metric: c.metric,
    value: c.metric === 'jensen-shannon' ? jensenShannon(a, b) : psi(a, b),
    threshold: c.threshold,
    limit: c.threshold + allowance,
    pValue: chiSquareHomogeneity(a, b).pValue,
    detail,
  };
}

function judgeShare(sig: ShareSignal, ref: number[], cur: number[], cfg: DriftConfig): Judged {
  const n1 = sum(ref);
  const n2 = sum(cur);
  const before = ref[1]! / n1;
  const after = cur[1]! / n2;
  const { maxChange } = cfg.signals[sig];
  return {
    metric: 'share-change',
    value: Math.abs(after - before),
    threshold: maxChange,
    limit: maxChange,
    pValue: twoProportionZTest(ref[1]!, n1, cur[1]!, n2).pValue,
    detail: { before, after },
  };
}

function judgeCtr(ref: number[], cur: number[], cfg: DriftConfig): Judged {
  const n1 = sum(ref);
  const n2 = sum(cur);
  const before = ref[1]! / n1;
  const after = cur[1]! / n2;
  const { z, pValue } = twoProportionZTest(ref[1]!, n1, cur[1]!, n2);
  // One-sided: only a drop is drift, so the whole alpha goes to that side.
  const oneSided = z < 0 ? pValue / 2 : 1 - pValue / 2;
  const { maxRelativeDrop } = cfg.signals.ctr;
  return {
    metric: 'relative-drop',
    value: (before - after) / before,
    threshold: maxRelativeDrop,
    limit: maxRelativeDrop,
    pValue: oneSided,
    detail: { before, after },
  };
}

/** Why a signal cannot be judged in this window, if it cannot. */
function insufficiency(sig: SignalName, ref: number[], cur: number[], current: WindowSummary, cfg: DriftConfig) {
  const feedback = FEEDBACK.has(sig);
  const [min, minName] = feedback ? [cfg.minFeedback, 'minFeedback'] : [cfg.minRequests, 'minRequests'];
  const n1 = sum(ref);
  const n2 = sum(cur);
  if (n1 < Math.max(1, min)) return `reference has ${n1} ${UNIT[sig]} < ${minName} ${min}`;
  if (feedback && current.feedback < cfg.minFeedback)
    return `${current.feedback} feedback events in the window < minFeedback ${cfg.minFeedback}`;
  if (n2 === 0) return `no ${UNIT[sig]} in the window`;
  if (sig === 'ctr' && ref[1] === 0) return 'no clicks in the reference';
  if (current.requests < cfg.minRequests)
    return `window has ${current.requests} requests < minRequests ${cfg.minRequests}`;
  return undefined;
}

function judgeSignal(
  sig: SignalName,
  ref: number[],
  cur: number[],
  current: WindowSummary,
  cfg: DriftConfig,
  alphaPerSignal: number,
): SignalResult {
  const n = { reference: sum(ref), current: sum(cur) };
  const role = ALERT.has(sig) ? 'alert' : 'retrain';
  const insufficient = insufficiency(sig, ref, cur, current, cfg);
  const computable = n.reference > 0 && n.current > 0 && !(sig === 'ctr' && ref[1] === 0);
  if (!computable)
    return {
      name: sig,
      role,
      ...settings(sig, cfg),
      value: null,
      limit: null,
      pValue: null,
      significant: false,
      breached: false,
      n,
      ...(insufficient ? { insufficient } : {}),
      detail: {},
    };
  const j = isDistribution(sig)
    ? judgeDistribution(sig, ref, cur, cfg)
    : sig === 'ctr'
      ? judgeCtr(ref, cur, cfg)
      : judgeShare(sig, ref, cur, cfg);
  const significant = j.pValue < alphaPerSignal;
  const detail: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(j.detail)) detail[k] = r4(v);
  return {
    name: sig,
    role,
    metric: j.metric,
    value: r4(j.value),
    threshold: j.threshold,
    limit: r4(j.limit),
    pValue: Number.isFinite(j.pValue) ? Number(j.pValue.toPrecision(3)) : null,
    significant,
    breached: !insufficient && significant && j.value >= j.limit,
    n,
    ...(insufficient ? { insufficient } : {}),
    detail,
  };
}

const describe = (s: SignalResult): string => {
  const d = s.detail;
  const moved =
    s.metric === 'share-change' || s.metric === 'relative-drop'
      ? ` (${fmt(d.before ?? null)} -> ${fmt(d.after ?? null)})`
      : d.meanBefore !== undefined
        ? ` (mean ${fmt(d.meanBefore)} -> ${fmt(d.meanAfter ?? null)})`
        : d.longTailBefore !== undefined
          ? ` (long tail ${fmt(d.longTailBefore)} -> ${fmt(d.longTailAfter ?? null)})`
          : '';
  return `${s.name} ${s.metric} ${fmt(s.value)} >= ${fmt(s.limit)}${moved}, p ${fmtP(s.pValue)}`;
};

/** Judges a window against the reference; persistence counts `history` plus this window. */
export function evaluateWindow({ reference, current, config, history }: EvaluateWindowArgs): WindowVerdict {
  const enabled = SIGNALS.filter((s) => config.signals[s].enabled);
  // Bonferroni over the signals tested in this window (#238: many tests, no correction, many false alarms).
  const alphaPerSignal = config.alpha / Math.max(1, enabled.length);
  const signals = enabled.map((sig) =>
    judgeSignal(
      sig,
      checkedCounts(reference[sig], sig, 'reference'),
      checkedCounts(current.counts[sig], sig, 'current.counts'),
      current,
      config,
      alphaPerSignal,
    ),
  );
  const window = {
    windowStartMs: current.window.startMs,
    windowEndMs: current.window.endMs,
    requests: current.requests,
    feedback: current.feedback,
    signals,
  };
  if (current.requests < config.minRequests)
    return {
      ...window,
      status: 'insufficient-data',
      breached: [],
      alerts: [],
      confirmed: [],
      reason: `insufficient data: ${current.requests} requests < minRequests ${config.minRequests}`,
    };

  const breached = signals.filter((s) => s.breached && s.role === 'retrain').map((s) => s.name);
  const alerts = signals.filter((s) => s.breached && s.role === 'alert').map((s) => s.name);
  // The last m evaluated windows, this one included; insufficient-data windows are no evidence either way.
  const { k, m } = config.persistence;
  const evaluated = [...history.filter((h) => h.status !== 'insufficient-data').map((h) => h.breached), breached].slice(
    -m,
  );
  const times = (sig: SignalName) => evaluated.filter((b) => b.includes(sig)).length;
  const confirmed = enabled.filter((s) => !ALERT.has(s) && times(s) >= k);
  const status: DriftStatus = confirmed.length > 0 ? 'drift' : breached.length + alerts.length > 0 ? 'warning' : 'ok';

  const bySignal = new Map(signals.map((s) => [s.name, s]));
  const parts: string[] = [];
  if (confirmed.length > 0)
    parts.push(
      `drift confirmed in ${confirmed.map((s) => `${s} (${times(s)} of the last ${evaluated.length} windows)`).join(', ')}`,
    );
  const fresh = breached.filter((s) => !confirmed.includes(s));
  if (fresh.length > 0)
    parts.push(`breached ${fresh.map((s) => `${s} (${times(s)} of ${evaluated.length}, ${k} needed)`).join(', ')}`);
  for (const s of [...breached, ...alerts]) parts.push(describe(bySignal.get(s)!));
  if (alerts.length > 0) parts.push(`alert (no retrain): ${alerts.join(', ')}`);
  if (parts.length === 0) {
    const thin = signals.filter((s) => s.insufficient).map((s) => s.name);
    parts.push(
      `ok: ${signals.length - thin.length} signals within thresholds` +
        (thin.length > 0 ? `; insufficient: ${thin.join(', ')}` : ''),
    );
  }
  return { ...window, status, breached, alerts, confirmed, reason: parts.join('; ') };
}
