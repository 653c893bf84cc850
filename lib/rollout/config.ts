/**
 * The declarative config of a rollout (Argo Rollouts / Flagger-like): the staging load test and its gate, the canary
 * weight steps with bake times, the analysis thresholds, and the approval timeout. Validated with zod; durations are
 * seconds so the workflow can use them without parsing.
 */
import { z } from 'zod';

export const CanaryStep = z
  .object({
    /** Percent of production traffic routed (sticky by user) to the new version. */
    weight: z.number().int().min(1).max(99),
    /** How long traffic runs at this weight before it is analysed (at most a day). */
    bakeSeconds: z
      .number()
      .positive()
      .max(24 * 3600),
  })
  .strict();

export const AnalysisConfig = z
  .object({
    /** Requests each of canary and baseline must have served in the window before anything is concluded. */
    minRequests: z.number().int().min(1).default(100),
    /** Impressions with feedback the baseline must have (clicks + non-clicks) before CTR is compared. */
    minFeedback: z.number().int().min(1).default(100),
    /** Clicks the baseline must have: no feedback flowing is not evidence of "no difference". */
    minClicks: z.number().int().min(1).default(10),
    /** The canary's error rate may not exceed this (absolute), nor the baseline's by more than this. */
    maxErrorRate: z.number().min(0).max(1).default(0.01),
    /** The canary's p99 may not exceed baseline p99 × ratio + slack, nor the ceiling. */
    maxP99Ratio: z.number().min(1).default(1.5),
    p99SlackMs: z.number().min(0).default(5),
    maxP99Ms: z.number().positive().default(100),
    /** One-sided two-proportion z-test on click-through: fail when the canary is worse at this level... */
    alpha: z.number().gt(0).lt(0.5).default(0.01),
    /** ...and by at least this relative drop (a practically meaningful difference). */
    minCtrDrop: z.number().min(0).max(1).default(0.1),
    /**
     * With too little traffic, re-analyse every `retrySeconds` up to `maxWaitSeconds`, then ask a human. Bounded so a
     * step analyses at most MAX_REANALYSES windows (each is an activity and events in the history).
     */
    retrySeconds: z.number().min(1).max(3600).default(15),
    maxWaitSeconds: z
      .number()
      .positive()
      .max(6 * 3600)
      .default(120),
  })
  .strict();
export type AnalysisConfig = z.infer<typeof AnalysisConfig>;

export const RolloutConfig = z
  .object({
    staging: z
      .object({
        replicas: z.number().int().min(1).max(8).default(1),
        loadTest: z
          .object({ qps: z.number().positive().default(100), seconds: z.number().positive().max(600).default(10) })
          .strict()
          .default({ qps: 100, seconds: 10 }),
        maxErrorRate: z.number().min(0).max(1).default(0.001),
        maxP99Ms: z.number().positive().default(50),
      })
      .strict()
      .default({ replicas: 1, loadTest: { qps: 100, seconds: 10 }, maxErrorRate: 0.001, maxP99Ms: 50 }),
    production: z
      .object({ replicas: z.number().int().min(1).max(8).default(2) })
      .strict()
      .default({ replicas: 2 }),
    canary: z
      .object({
        steps: z
          .array(CanaryStep)
          .min(1)
          .max(10)
          .default([
            { weight: 5, bakeSeconds: 60 },
            { weight: 25, bakeSeconds: 60 },
            { weight: 50, bakeSeconds: 60 },
          ]),
        analysis: AnalysisConfig.default(AnalysisConfig.parse({})),
      })
      .strict()
      .default({
        steps: [
          { weight: 5, bakeSeconds: 60 },
          { weight: 25, bakeSeconds: 60 },
          { weight: 50, bakeSeconds: 60 },
        ],
        analysis: AnalysisConfig.parse({}),
      }),
    approval: z
      .object({
        /** No decision within this time rolls back. */
        timeoutSeconds: z
          .number()
          .positive()
          .max(7 * 24 * 3600)
          .default(24 * 3600),
      })
      .strict()
      .default({ timeoutSeconds: 24 * 3600 }),
    /**
     * One rollout per environment: a rollout waits (phase `waiting-for-environment`) while another holds staging or
     * production, re-trying every `retrySeconds`, and fails after `maxWaitSeconds`.
     */
    environments: z
      .object({
        retrySeconds: z.number().min(1).max(600).default(10),
        maxWaitSeconds: z
          .number()
          .positive()
          .max(7 * 24 * 3600)
          .default(6 * 3600),
      })
      .strict()
      .default({ retrySeconds: 10, maxWaitSeconds: 6 * 3600 }),
    /** Salt of the sticky user → version assignment; kept for the whole rollout so users only move towards the canary. */
    salt: z.string().min(1).optional(),
  })
  .strict();
export type RolloutConfig = z.infer<typeof RolloutConfig>;
export type RolloutConfigInput = z.input<typeof RolloutConfig>;

/** Re-analyses of one canary step at most: maxWaitSeconds / retrySeconds. */
export const MAX_REANALYSES = 360;

export function parseRolloutConfig(input: unknown, source = 'rollout config'): RolloutConfig {
  const parsed = RolloutConfig.safeParse(input ?? {});
  if (parsed.success) {
    const { retrySeconds, maxWaitSeconds } = parsed.data.canary.analysis;
    if (maxWaitSeconds / retrySeconds > MAX_REANALYSES)
      throw new RolloutConfigError(
        `${source} is invalid: canary.analysis: maxWaitSeconds ${maxWaitSeconds} / retrySeconds ${retrySeconds} ` +
          `would re-analyse a step ${Math.floor(maxWaitSeconds / retrySeconds)} times; at most ${MAX_REANALYSES}`,
      );
    const weights = parsed.data.canary.steps.map((s) => s.weight);
    const bad = weights.findIndex((w, i) => i > 0 && w <= weights[i - 1]!);
    if (bad > 0)
      throw new RolloutConfigError(
        `${source} is invalid: canary.steps.${bad}.weight: ${weights[bad]} must be greater than the previous step's ${weights[bad - 1]}`,
      );
    return parsed.data;
  }
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new RolloutConfigError(`${source} is invalid: ${problems.join('; ')}`);
}

export class RolloutConfigError extends Error {
  override name = 'RolloutConfigError';
}
