/**
 * The declarative promotion-gate config (MLflow `MetricThreshold`-like, TFX "blessing"-like), validated with zod so
 * that a typo in a gate file is an error naming the field, never a gate that silently does not apply.
 *
 * Every threshold is judged on 95% bootstrap confidence intervals, never on point estimates:
 * - `absolute`: the lower bound of the model's metric must reach the floor;
 * - `vsPopularity` / `vsChampion`: the lower bound of the paired difference (model − baseline, same users) must
 *   exceed `minAbsolute`, and the lower bound of the relative difference must exceed `minRelative`. A negative
 *   `minRelative` is a non-inferiority margin: "proven no worse than 2% below the champion";
 * - `sliceRegression`: a slice fails when its regression is proven larger than `maxRelative` (the upper bound of the
 *   relative difference is below −maxRelative); slices with fewer than `minUsers` users are reported, not judged.
 */
import { z } from 'zod';

export const GATE_METRICS = ['recall@10', 'ndcg@10', 'hr@10', 'recall@50', 'ndcg@50', 'hr@50', 'mrr'] as const;
export const GateMetric = z.enum(GATE_METRICS);
export type GateMetric = z.infer<typeof GateMetric>;

const Improvement = z
  .object({
    metric: GateMetric.default('ndcg@10'),
    /** Lower CI bound of (model − baseline) must exceed this. */
    minAbsolute: z.number().optional(),
    /** Lower CI bound of (model − baseline) / baseline must exceed this (−0.02: non-inferiority within 2%). */
    minRelative: z.number().optional(),
    /**
     * Judge on one evaluation slice instead of every test user, e.g. `history=some`: the users with a history in the
     * data, the only ones the model ranks for in serving (a request without history gets the popularity fallback).
     */
    slice: z.string().min(1).optional(),
  })
  .strict();

export const GateConfig = z
  .object({
    /** metric → floor for the lower CI bound of the model's value. */
    absolute: z.partialRecord(GateMetric, z.number().min(0).max(1)).default({}),
    vsPopularity: Improvement.default({ metric: 'ndcg@10', minAbsolute: 0 }),
    vsChampion: Improvement.default({ metric: 'ndcg@10', minRelative: -0.02 }),
    sliceRegression: z
      .object({
        metric: GateMetric.default('ndcg@10'),
        against: z.array(z.enum(['champion', 'popularity'])).default(['champion']),
        maxRelative: z.number().min(0).default(0.1),
        minUsers: z.number().int().min(1).default(20),
      })
      .strict()
      .default({ metric: 'ndcg@10', against: ['champion'], maxRelative: 0.1, minUsers: 20 }),
    quantization: z
      .object({
        /** int8 ships only if its NDCG@10 is within this relative tolerance of fp32 (and it is faster). */
        ndcgTolerance: z.number().min(0).max(1).default(0.01),
      })
      .strict()
      .default({ ndcgTolerance: 0.01 }),
  })
  .strict();
export type GateConfig = z.infer<typeof GateConfig>;
export type GateConfigInput = z.input<typeof GateConfig>;

/** Parses a gate config; the error names each bad field and value. */
export function parseGateConfig(input: unknown, source = 'gate config'): GateConfig {
  const parsed = GateConfig.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new GateConfigError(`${source} is invalid: ${problems.join('; ')}`);
}

export class GateConfigError extends Error {
  override name = 'GateConfigError';
}
