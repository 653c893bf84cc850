/**
 * Declarative configuration of a drift monitor: the windowing, the minimum samples, the significance level, the
 * persistence rule and one threshold per signal. Every field has a default, so `{}` is a complete config and a user
 * writes only what they change, e.g. `{ "persistence": { "k": 2 }, "signals": { "ctr": { "enabled": false } } }`.
 *
 * The defaults avoid the known faults of the tools this imitates. Evidently flags everything on large samples because
 * it decides by p-value there (evidently#50, #710, #1396): here an effect size must exceed a threshold, and the test
 * is only a second condition. Evidently tests many columns with no correction (#238): here alpha is divided among the
 * enabled signals (Bonferroni). Evidently flags drift on identical data from seasonality and windowing (#171): here
 * the baseline spans several windows and drift needs k of m windows, so one odd window confirms nothing; a daily
 * cycle larger than a threshold still would (see intervalSeconds).
 * Pure and free of Node built-ins (workflow code may import it).
 */
import { z } from 'zod';
import { configIssue } from '../config-issue';
import { SIGNALS, type SignalName } from './summary';

export const DISTRIBUTION_METRICS = ['jensen-shannon', 'psi'] as const;
export type DistributionMetric = (typeof DISTRIBUTION_METRICS)[number];

/** Signals compared as distributions over buckets. */
export const DISTRIBUTION_SIGNALS = [
  'history-length',
  'requested-popularity',
  'recommended-popularity',
  'score-top1',
  'score-mean',
] as const satisfies readonly SignalName[];
export type DistributionSignal = (typeof DISTRIBUTION_SIGNALS)[number];
/** Signals compared as the share of one bucket of two (unknown users, new items, fallback answers). */
export const SHARE_SIGNALS = [
  'user-unknown',
  'feedback-new-items',
  'fallback',
] as const satisfies readonly SignalName[];
export type ShareSignal = (typeof SHARE_SIGNALS)[number];
/** Signals counted on feedback events: insufficient in a window with fewer than `minFeedback` of them. */
export const FEEDBACK_SIGNALS = ['feedback-new-items', 'ctr'] as const satisfies readonly SignalName[];

const enabled = z.boolean().default(true);

/** A group's own fields; unknown keys are errors (a typo must not silently keep a default). */
const group = <T extends z.ZodRawShape>(shape: T) => {
  const settings = z.object(shape).strict();
  // Every field has a default, so an omitted group is parsed as `{}` (prefault: the default goes through parsing).
  return settings.prefault({} as z.input<typeof settings>);
};

/**
 * Jensen-Shannon (base 2, in [0, 1]) with 0.1 is the default of Evidently (above 1,000 rows) and NannyML: a
 * distance, so it does not grow with the sample. PSI users usually want 0.2 (the credit-scoring rule of thumb: 0.1
 * slight, 0.25 major); the threshold is not switched with the metric, set it with it. A sampling allowance for the
 * two sample sizes is added to a Jensen-Shannon threshold so small windows do not breach by noise alone.
 */
const distribution = group({
  enabled,
  metric: z.enum(DISTRIBUTION_METRICS).default('jensen-shannon'),
  threshold: z.number().positive().default(0.1),
});

/**
 * An absolute change of 0.1 in a share (10% of the requests now come from unknown users, up from 2%): a change
 * that size is visible in the product; smaller ones are ordinary day-to-day variation of a user mix.
 */
const share = group({ enabled, maxChange: z.number().gt(0).max(1).default(0.1) });

export const DriftConfig = z
  .object({
    /**
     * One window per hour: long enough for a few thousand requests on a small deployment and short enough to confirm
     * drift within a working day. Seasonality (#171) is not windowed away: every hour of the day is judged against
     * the baseline's few hours, so the thresholds must stay above the traffic's own daily swing; where it is larger,
     * use daily windows (86400, baselineWindows 1). Down to 2 s for tests and the demo.
     */
    intervalSeconds: z.number().int().min(2).default(3600),
    /** Wait after a window ends for late log chunks (replicas flush every few seconds to minutes). */
    graceSeconds: z.number().int().min(0).default(300),
    /**
     * Windows after a promotion whose merged counts become the reference: three hours of the new champion's own
     * traffic (scores and CTR exist only once it serves), so one odd hour does not become the baseline, as NannyML
     * takes its reference from several chunks.
     */
    baselineWindows: z.number().int().min(1).default(3),
    /**
     * A window with fewer recommend records is `insufficient-data`, its own outcome (never ok, never drift). At 1,000
     * requests a share is known to ±3 points and Evidently switches from tests to distances.
     */
    minRequests: z.number().int().min(1).default(1000),
    /**
     * Below this many feedback events in a window, the feedback signals (ctr, feedback-new-items) are insufficient
     * there: at 300 events a CTR of 0.12 is known to about ±0.04.
     */
    minFeedback: z.number().int().min(0).default(300),
    /**
     * Significance of the test that must hold besides the effect size, Bonferroni-corrected over the enabled signals
     * (#238: many tests, no correction). 0.01 because the test only guards small windows against noise: the effect
     * size decides on large ones (#50, #710, #1396).
     */
    alpha: z.number().gt(0).lt(1).default(0.01),
    /**
     * Drift is confirmed when a signal breaches in k of the last m evaluated windows (insufficient-data windows are not
     * counted). A rule on run time between false alarms as alibi-detect sets its online thresholds: with a per-window
     * false breach rate q, a false confirmation needs 3 of 4 windows, about 4q^3 per window
     * (q = 1%: one in 250,000 windows, ~28 years of hourly windows).
     * m is at most 20: the verdicts of the last m windows are kept in workflow state.
     */
    persistence: z
      .object({ k: z.number().int().min(1).default(3), m: z.number().int().min(1).max(20).default(4) })
      .strict()
      .refine((p) => p.k <= p.m, { message: 'must be at most persistence.m', path: ['k'] })
      .prefault({}),
    /** After a drift retrain starts, no other for six hours: the new model needs windows of its own to be judged. */
    cooldownSeconds: z.number().int().min(0).default(21_600),
    /** false: report and alert only (the monitor never starts a retrain). */
    retrain: z.boolean().default(true),
    signals: group({
      'user-unknown': share,
      'history-length': distribution,
      'requested-popularity': distribution,
      'recommended-popularity': distribution,
      'feedback-new-items': share,
      /** Scores are also reported as a Wasserstein distance normalised by the reference's standard deviation. */
      'score-top1': distribution,
      'score-mean': distribution,
      /**
       * Only a drop counts (a CTR rise is not a reason to retrain): 20% relative, e.g. 0.12 -> 0.096, a loss an
       * A/B test of a recommender would call significant; day-to-day CTR varies by a few percent.
       */
      ctr: group({ enabled, maxRelativeDrop: z.number().gt(0).max(1).default(0.2) }),
      /** Operational alert, never a retrain: more fallback answers mean the serving tier fails, not the model. */
      fallback: share,
    } satisfies Record<SignalName, z.ZodType>),
  })
  .strict();
export type DriftConfig = z.infer<typeof DriftConfig>;
export type DriftConfigInput = z.input<typeof DriftConfig>;

/** Parses a config; throws a ConfigError naming the field (dotted path under `drift.`) and the offending value. */
export function parseDriftConfig(input: unknown = {}): DriftConfig {
  const parsed = DriftConfig.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  throw configIssue('drift', input, parsed.error, (at) =>
    at === 'signals' ? `is not a known setting (signals: ${SIGNALS.join(', ')})` : 'is not a known setting',
  );
}
