/**
 * The adaptive router's config: which mode, how the cheap path's confidence is measured and where its threshold is,
 * and the expensive path's budget (a token bucket). Parsed with zod; a bad value is a ConfigError naming
 * `router.<path>` and the value. Kept apart from router.ts so that config loaders and the CLI can validate a router
 * config without the routing code.
 *
 * Default thresholds are starting points, not tuned values: on ML-100K's two-tower and sequential graphs (random
 * histories) the raw top-1/top-2 score gap has a median near 0.07, and the normalised entropy of the top 10 at
 * temperature 0.1 a median near 0.82 (at temperature 1 it is above 0.99 for nearly every request, so it could not
 * tell requests apart, hence the lower default temperature for entropy). Each default sends roughly half the
 * requests to the cheap path before the budget applies; the router benchmark is where a deployment tunes them.
 */
import { z } from 'zod';
import { configIssue } from '../lib/config-issue';

export const ROUTER_MODES = ['routed', 'always-cheap', 'always-cascade'] as const;
export type RouterMode = (typeof ROUTER_MODES)[number];

export const CONFIDENCE_MEASURES = ['margin', 'entropy'] as const;
export type ConfidenceMeasure = (typeof CONFIDENCE_MEASURES)[number];

/** Threshold when none is given: margin is a minimum (raw score gap), entropy a maximum (normalised, in [0, 1]). */
export const DEFAULT_THRESHOLD: Readonly<Record<ConfidenceMeasure, number>> = { margin: 0.1, entropy: 0.8 };
/** Softmax temperature for entropy when none is given; margin without a temperature is the raw score gap. */
export const DEFAULT_ENTROPY_TEMPERATURE = 0.1;
export const DEFAULT_TOP_M = 10;

export const RouterConfig = z
  .object({
    /**
     * `routed`: confident -> cheap, else cascade within the budget, else cheap-budget. `always-cheap` and
     * `always-cascade` are the baselines the router is benchmarked against; `always-cascade` ignores the budget.
     */
    mode: z.enum(ROUTER_MODES).default('routed'),
    confidence: z
      .object({
        /**
         * `margin`: top-1 minus top-2 score (of softmax probabilities when a temperature is given); higher is more
         * confident, confident when >= threshold. `entropy`: entropy of the softmax over the top `topM` scores,
         * divided by ln(m) so it lies in [0, 1]; lower is more confident, confident when <= threshold.
         */
        measure: z.enum(CONFIDENCE_MEASURES).default('margin'),
        threshold: z.number().min(0).optional(),
        /** How many of the top scores the softmax covers (fewer when the cheap path returned fewer). */
        topM: z.number().int().min(2).max(10_000).default(DEFAULT_TOP_M),
        temperature: z.number().positive().optional(),
      })
      .strict()
      .default({ measure: 'margin', topM: DEFAULT_TOP_M }),
    budget: z
      .object({
        /** Expensive-path requests per second, sustained. */
        ratePerSecond: z.number().positive(),
        /** Expensive-path requests allowed at once after a quiet spell; default max(1, ratePerSecond). */
        burst: z.number().min(1).optional(),
      })
      .strict(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.confidence.measure === 'entropy' && c.confidence.threshold !== undefined && c.confidence.threshold > 1)
      ctx.addIssue({
        code: 'custom',
        path: ['confidence', 'threshold'],
        message: 'must be at most 1 for the entropy measure (normalised entropy lies in [0, 1]; 1 routes nothing)',
      });
  });
export type RouterConfigInput = z.input<typeof RouterConfig>;

export interface ConfidenceSettings {
  measure: ConfidenceMeasure;
  threshold: number;
  topM: number;
  /** Undefined only for margin: the raw score gap. */
  temperature?: number;
}

export interface RouterSettings {
  mode: RouterMode;
  confidence: ConfidenceSettings;
  budget: { ratePerSecond: number; burst: number };
}

/** Parses and completes a router config; a bad value is a ConfigError naming `router.<path>` and the value. */
export function routerSettings(input: unknown): RouterSettings {
  const parsed = RouterConfig.safeParse(input);
  if (!parsed.success) throw configIssue('router', input, parsed.error);
  const { mode, confidence, budget } = parsed.data;
  const temperature =
    confidence.temperature ?? (confidence.measure === 'entropy' ? DEFAULT_ENTROPY_TEMPERATURE : undefined);
  return {
    mode,
    confidence: {
      measure: confidence.measure,
      threshold: confidence.threshold ?? DEFAULT_THRESHOLD[confidence.measure],
      topM: confidence.topM,
      ...(temperature === undefined ? {} : { temperature }),
    },
    budget: { ratePerSecond: budget.ratePerSecond, burst: budget.burst ?? Math.max(1, budget.ratePerSecond) },
  };
}
