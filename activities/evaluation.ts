/**
 * Offline evaluation activity: full-ranking Recall/NDCG/HR at k and 50 and MRR of the trained model on the test
 * split, beside a popularity baseline and, when given, the current champion (models/evaluate.py), overall and per
 * slice, with 95% bootstrap intervals and paired differences: the figures promotion gates decide on. The report
 * (JSON) and a readable table (markdown) are stored next to the training outputs; the summary is keyed by k and the
 * champion compared with, so re-evaluating the same training against the same champion reuses it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { z } from 'zod';
import { withTempDir } from '../lib/files';
import { objectStore } from '../lib/object-store';
import type { DatasetVersion } from '../lib/dataset/ref';
import { localDataset } from '../lib/dataset/cache';
import { PythonStepError, runPython } from './python-process';
import { localModel, type TrainResult } from './training';

/** Bumped when the summary's shape changes: older summaries are not reused. */
const SUMMARY_FORMAT = 'v2';

export type MetricSet = Record<string, number>;

/** A point estimate with its 95% percentile bootstrap interval. */
export const Interval = z.object({ point: z.number(), lo: z.number(), hi: z.number() });
export type Interval = z.infer<typeof Interval>;

/** Paired model − other over the same users; `relative` = model / other − 1 when other > 0 on every resample. */
export const Difference = Interval.extend({ relative: Interval.optional() });
export type Difference = z.infer<typeof Difference>;

export const MetricIntervals = z.record(z.string(), Interval);
export type MetricIntervals = z.infer<typeof MetricIntervals>;
export const MetricDifferences = z.record(z.string(), Difference);
export type MetricDifferences = z.infer<typeof MetricDifferences>;

export const RankerIntervals = z.object({
  model: MetricIntervals,
  popularity: MetricIntervals,
  baseline: MetricIntervals.optional(),
});
export type RankerIntervals = z.infer<typeof RankerIntervals>;

export const Differences = z.object({ vsPopularity: MetricDifferences, vsBaseline: MetricDifferences.optional() });
export type Differences = z.infer<typeof Differences>;

/** One slice of users (e.g. `activity=cold`, `popularity=tail`); intervals are empty when it has no users. */
export const SliceResult = z.object({
  dimension: z.string(),
  value: z.string(),
  nUsers: z.number().int().nonnegative(),
  /** Fewer users than the report's minimum (20): reported, not for gating. */
  small: z.boolean(),
  model: MetricIntervals,
  popularity: MetricIntervals,
  baseline: MetricIntervals.optional(),
  vsPopularity: MetricDifferences,
  vsBaseline: MetricDifferences.optional(),
});
export type SliceResult = z.infer<typeof SliceResult>;

const PerRanker = <T extends z.ZodType>(value: T) =>
  z.object({ model: value, popularity: value, baseline: value.optional() });

export const EvaluationResult = z.object({
  reportUri: z.string(),
  /** Markdown: the primary metric by slice with intervals and differences, then every metric overall. */
  tableUri: z.string(),
  k: z.number().int().positive(),
  ks: z.array(z.number().int().positive()),
  /** Point estimates over all evaluated users (recall/ndcg/hr at each of `ks`, mrr). */
  model: z.record(z.string(), z.number()),
  popularity: z.record(z.string(), z.number()),
  baseline: z.record(z.string(), z.number()).optional(),
  /** The champion version compared with, when there was one. */
  baselineVersion: z.string().optional(),
  nUsers: z.number().int().nonnegative(),
  nColdUsers: z.number().int().nonnegative(),
  intervals: RankerIntervals,
  differences: Differences,
  slices: z.record(z.string(), SliceResult),
  /** Share of catalogue items in some user's top k. */
  coverage: PerRanker(z.number()),
  /** Mean self-information −log2 p(item) of recommended items, bits (null: nothing recommended). */
  novelty: PerRanker(z.number().nullable()),
  bootstrap: z.object({ nResamples: z.number().int(), confidence: z.number(), seed: z.number().int() }),
  reused: z.boolean(),
});
export type EvaluationResult = z.infer<typeof EvaluationResult>;

/** The model to compare with: the current champion, possibly trained on another dataset version. */
export interface EvaluationBaseline {
  modelVersion: string;
  modelUri: string;
  dataset: DatasetVersion;
}

export interface EvaluateInput {
  dataset: DatasetVersion;
  training: TrainResult;
  k?: number;
  baseline?: EvaluationBaseline | null;
}

// The report models/evaluate.py writes (documented in its module docstring); only what the summary needs.
const PyDifference = Interval.extend({
  rel_point: z.number().nullable(),
  rel_lo: z.number().nullable(),
  rel_hi: z.number().nullable(),
});
const PyPopulation = z.object({
  n_users: z.number().int().nonnegative(),
  small: z.boolean(),
  intervals: z.record(z.string(), MetricIntervals),
  differences: z.record(z.string(), z.record(z.string(), PyDifference)),
});
const PyReport = z.object({
  k: z.number().int().positive(),
  ks: z.array(z.number().int().positive()),
  rankers: z.array(z.string()),
  metric_names: z.array(z.string()),
  n_users: z.number().int().nonnegative(),
  n_cold_users: z.number().int().nonnegative(),
  metrics: z.object({
    model: z.record(z.string(), z.number()),
    popularity: z.record(z.string(), z.number()),
    baseline: z.record(z.string(), z.number()).optional(),
  }),
  overall: PyPopulation,
  slices: z.record(z.string(), PyPopulation.extend({ dimension: z.string(), value: z.string() })),
  coverage: PerRanker(z.number()),
  novelty: PerRanker(z.number().nullable()),
  bootstrap: z.object({ n_resamples: z.number().int(), confidence: z.number(), seed: z.number().int() }),
});
type PyReport = z.infer<typeof PyReport>;
type PyPopulation = z.infer<typeof PyPopulation>;

export class EvaluationReportError extends Error {
  override readonly name = 'EvaluationReportError';
}

/** Parses models/evaluate.py's report; the error names the file and each field that does not fit. */
export function parseEvaluationReport(raw: unknown, source: string): PyReport {
  const parsed = PyReport.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new EvaluationReportError(`${source} is not a valid evaluation report: ${problems.join('; ')}`);
  }
  const report = parsed.data;
  const hasBaseline = report.rankers.includes('baseline');
  const populations: [string, PyPopulation][] = [['overall', report.overall], ...Object.entries(report.slices)];
  for (const [name, pop] of populations) {
    if (pop.n_users === 0) continue;
    const rankers = ['model', 'popularity', ...(hasBaseline ? ['baseline'] : [])];
    const others = ['vs_popularity', ...(hasBaseline ? ['vs_baseline'] : [])];
    for (const [group, keys] of [
      ['intervals', rankers],
      ['differences', others],
    ] as const) {
      for (const key of keys)
        for (const metric of report.metric_names)
          if (pop[group][key]?.[metric] === undefined)
            throw new EvaluationReportError(`${source}: ${name}.${group}.${key} has no ${metric}`);
    }
  }
  return report;
}

function difference(d: z.infer<typeof PyDifference>): Difference {
  const out: Difference = { point: d.point, lo: d.lo, hi: d.hi };
  if (d.rel_point !== null && d.rel_lo !== null && d.rel_hi !== null)
    out.relative = { point: d.rel_point, lo: d.rel_lo, hi: d.rel_hi };
  return out;
}

const differences = (m: Record<string, z.infer<typeof PyDifference>> | undefined): MetricDifferences =>
  Object.fromEntries(Object.entries(m ?? {}).map(([k, d]) => [k, difference(d)]));

function populationFigures(pop: PyPopulation, hasBaseline: boolean) {
  return {
    model: pop.intervals.model ?? {},
    popularity: pop.intervals.popularity ?? {},
    ...(hasBaseline ? { baseline: pop.intervals.baseline ?? {} } : {}),
    vsPopularity: differences(pop.differences.vs_popularity),
    ...(hasBaseline ? { vsBaseline: differences(pop.differences.vs_baseline) } : {}),
  };
}

/** The summary the workflow and the gates get, from a parsed report. */
export function summarise(
  report: PyReport,
  where: { reportUri: string; tableUri: string; baselineVersion?: string },
): EvaluationResult {
  const hasBaseline = report.rankers.includes('baseline');
  const overall = populationFigures(report.overall, hasBaseline);
  return {
    reportUri: where.reportUri,
    tableUri: where.tableUri,
    k: report.k,
    ks: report.ks,
    model: report.metrics.model,
    popularity: report.metrics.popularity,
    ...(report.metrics.baseline ? { baseline: report.metrics.baseline } : {}),
    ...(where.baselineVersion !== undefined ? { baselineVersion: where.baselineVersion } : {}),
    nUsers: report.n_users,
    nColdUsers: report.n_cold_users,
    intervals: {
      model: overall.model,
      popularity: overall.popularity,
      ...(overall.baseline ? { baseline: overall.baseline } : {}),
    },
    differences: {
      vsPopularity: overall.vsPopularity,
      ...(overall.vsBaseline ? { vsBaseline: overall.vsBaseline } : {}),
    },
    slices: Object.fromEntries(
      Object.entries(report.slices).map(([name, s]) => [
        name,
        {
          dimension: s.dimension,
          value: s.value,
          nUsers: s.n_users,
          small: s.small,
          ...populationFigures(s, hasBaseline),
        },
      ]),
    ),
    coverage: report.coverage,
    novelty: report.novelty,
    bootstrap: {
      nResamples: report.bootstrap.n_resamples,
      confidence: report.bootstrap.confidence,
      seed: report.bootstrap.seed,
    },
    reused: false,
  };
}

/**
 * Where the evaluation of a training against a baseline lives. The baseline's version, model and dataset are part
 * of the key: the same training judged against another champion is another result.
 */
export function evaluationKey(k: number, baseline?: EvaluationBaseline | null): string {
  if (!baseline) return `evaluation-${SUMMARY_FORMAT}-k${k}`;
  const hash = createHash('sha256')
    .update(
      JSON.stringify({
        version: baseline.modelVersion,
        modelUri: baseline.modelUri,
        dataset: `${baseline.dataset.name}/${baseline.dataset.version}`,
      }),
    )
    .digest('hex')
    .slice(0, 12);
  const version = baseline.modelVersion.replace(/[^A-Za-z0-9._-]/g, '_');
  return `evaluation-${SUMMARY_FORMAT}-k${k}-vs-v${version}-${hash}`;
}

export async function evaluate(input: EvaluateInput): Promise<EvaluationResult> {
  const ctx = Context.current();
  const k = input.k ?? 10;
  const baseline = input.baseline ?? undefined;
  const store = objectStore();
  const key = evaluationKey(k, baseline);
  const reportUri = `${input.training.uri}${key}.json`;
  const tableUri = `${input.training.uri}${key}.md`;
  const summaryUri = `${input.training.uri}${key}.summary.json`;
  const existing = EvaluationResult.safeParse(await store.getJson(summaryUri));
  if (existing.success) return { ...existing.data, reused: true };

  const ticker = setInterval(() => ctx.heartbeat({ stage: 'evaluate' }), 5000);
  try {
    const dataDir = await localDataset(input.dataset.manifestUri);
    return await withTempDir('eval', async (work) => {
      const modelPath = await localModel(input.training.modelUri, work);
      const out = path.join(work, 'report.json');
      const table = path.join(work, 'report.md');
      const args = ['--data-dir', dataDir, '--model', modelPath, '--out', out, '--table-out', table];
      args.push('--k', String(k));
      if (baseline) {
        const baselineData = await localDataset(baseline.dataset.manifestUri);
        const baselineModel = await localModel(baseline.modelUri, path.join(work, 'baseline'));
        args.push('--baseline-model', baselineModel, '--baseline-data-dir', baselineData);
      }
      await runPython({ module: 'models.evaluate', args, signal: ctx.cancellationSignal });
      const report = parseEvaluationReport(JSON.parse(await fs.readFile(out, 'utf8')) as unknown, out);
      await store.putFile(reportUri, out);
      await store.putFile(tableUri, table);
      const summary = summarise(report, { reportUri, tableUri, baselineVersion: baseline?.modelVersion });
      // The summary last: its presence means the evaluation is complete.
      await store.putJson(summaryUri, summary);
      return summary;
    });
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw new CancelledFailure('evaluation cancelled');
    if (err instanceof PythonStepError && ['UsageError', 'DataError', 'CheckpointError'].includes(err.errorType))
      throw ApplicationFailure.nonRetryable(err.message, err.errorType);
    if (err instanceof EvaluationReportError) throw ApplicationFailure.nonRetryable(err.message, err.name);
    throw err;
  } finally {
    clearInterval(ticker);
  }
}
