/**
 * Declarative configuration of dataset validation: which checks run, their thresholds, and whether a breach is a
 * warning or stops the version (`fail`). Every field has a default, so `{}` is a complete config and a user only
 * writes what they change, e.g. `{ "popularityShift": { "threshold": 0.2 }, "unseenUsers": { "severity": "off" } }`.
 * A check's config key is also its name in reports and summaries, so a report says which key to tune.
 */
import { z } from 'zod';
import { configIssue } from '../config-issue';

export const SEVERITIES = ['warn', 'fail', 'off'] as const;
const Severity = z.enum(SEVERITIES);
export type Severity = z.infer<typeof Severity>;

const share = z.number().min(0).max(1);
const positive = z.number().positive();
const distance = z.enum(['jensen-shannon', 'l-infinity']);
export type DistanceMetric = z.infer<typeof distance>;

/** A check's own fields plus its severity; unknown keys are errors (a typo must not silently disable a check). */
const check = <T extends z.ZodRawShape>(severity: Severity, shape: T) => {
  const settings = z.object({ severity: Severity.default(severity), ...shape }).strict();
  // Every field has a default, so an omitted check is parsed as `{}` (prefault: the default goes through parsing).
  return settings.prefault({} as z.input<typeof settings>);
};

export const ValidationConfig = z
  .object({
    /** Columns added, removed or retyped in any file of the version, compared with the previous version. */
    schemaChange: check('fail', {}),
    /** Total interactions dropped by more than `maxDrop` (relative) compared with the previous version. */
    volumeDrop: check('fail', { maxDrop: share.default(0.2) }),
    /**
     * A day present in both versions lost more than `maxDrop` of its rows (data lost on re-ingestion). Days with fewer
     * than `minRows` rows in the previous version are too small to judge.
     */
    dailyVolumeDrop: check('fail', { maxDrop: share.default(0.2), minRows: z.number().int().min(0).default(50) }),
    /**
     * A new day (after the previous version's last day) below `minRatio` x the median of its neighbours (`windowDays`
     * on each side, old days included) AND more than `minRobustZ` robust standard deviations (1.4826 x MAD of the
     * neighbours) below it. The second condition keeps naturally bursty logs quiet (MovieLens-100K; the ML-1M-like
     * generator has ~0.2% of days below 60% at z > 4) while a half-volume day in a steady log is caught. The first and
     * last day of the version are partial by nature and not judged, nor days whose neighbour median is below
     * `minMedianRows`.
     */
    dailyVolumeDip: check('fail', {
      minRatio: share.default(0.6),
      minRobustZ: z.number().min(0).default(4),
      windowDays: z.number().int().min(1).max(60).default(7),
      minMedianRows: z.number().int().min(0).default(50),
    }),
    /**
     * A stretch longer than `maxHours` without any interaction where data was dense: the median daily volume of the
     * `windowDays` days on either side implies at least `minMissingRows` missing rows. A long pause in a sparse log
     * (the tail of MovieLens, a few rows a day) is not an outage. Gaps already present (same start and end) in the
     * previous validated version were accepted then and are not reported again.
     */
    timestampGap: check('fail', {
      maxHours: positive.default(72),
      minMissingRows: z.number().int().min(0).default(100),
      windowDays: z.number().int().min(1).max(60).default(7),
    }),
    /**
     * Share of the version's interactions on raw item ids the previous version did not have (`maxShare`), and the same
     * share among the rows newer than the previous version alone (`newRowsMaxShare`; new releases take a larger share
     * of a new week than of a whole history). A broken id mapping: 100% in the new rows.
     */
    unseenItems: check('fail', { maxShare: share.default(0.1), newRowsMaxShare: share.default(0.3) }),
    /** Share of the version's interactions by raw user ids the previous version did not have (new users are normal). */
    unseenUsers: check('warn', { maxShare: share.default(0.5) }),
    /** Share of the version's interactions with rating/event values the previous version never had. */
    unseenRatings: check('fail', { maxShare: share.default(0) }),
    /**
     * Distance between the item popularity distributions (share of interactions per raw item id): of the whole version
     * (`threshold`), and of the rows newer than the previous version alone (`newRowsThreshold`: a week is naturally
     * more concentrated than a history; in the ML-1M-like generator a benign new week is at Jensen-Shannon 0.15, the
     * same week with ids off by one at 0.57). A sampling allowance for the sample sizes is added to both.
     */
    popularityShift: check('fail', {
      metric: distance.default('jensen-shannon'),
      threshold: share.default(0.1),
      newRowsThreshold: share.default(0.3),
    }),
    /** Distance between the distributions of interactions per user (fixed log-scale buckets). */
    userActivityShift: check('warn', { metric: distance.default('jensen-shannon'), threshold: share.default(0.1) }),
  })
  .strict();
export type ValidationConfig = z.infer<typeof ValidationConfig>;
export type ValidationConfigInput = z.input<typeof ValidationConfig>;
export type CheckName = keyof ValidationConfig;
export const CHECK_NAMES = Object.keys(ValidationConfig.shape) as CheckName[];

/** Parses a config; throws a ConfigError naming the field (dotted path) and the offending value. */
export function parseValidationConfig(input: unknown = {}): ValidationConfig {
  const parsed = ValidationConfig.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  throw configIssue('validation', input, parsed.error, (at) =>
    at === '' ? `is not a known setting (checks: ${CHECK_NAMES.join(', ')})` : 'is not a known setting',
  );
}
