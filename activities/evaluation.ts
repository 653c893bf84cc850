/**
 * Offline evaluation activity: full-ranking Recall/NDCG/HR at k and 50 and MRR of the trained model on the test
 * split, beside recent popularity (all-time popularity reported too) and, when given, the current champion
 * (models/evaluate.py), overall, for warm and cold users apart and per slice, with 95% bootstrap intervals and paired
 * differences: the figures promotion gates decide on. The report (JSON) and a readable table (markdown) are stored
 * next to the training outputs; the summary is keyed by k and the champion compared with, so re-evaluating the same
 * training against the same champion reuses it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { localDataset } from '../lib/dataset/cache';
import {
  EvaluationResult,
  Interval,
  MetricIntervals,
  PerRanker,
  type Difference,
  type EvaluateInput,
  type EvaluationBaseline,
  type MetricDifferences,
} from './contracts';
import type { ActivityDeps } from './deps';
import { describeIssues, PythonOutputError, runPythonStep } from './python-step';
import { localModel } from './training';

/**
 * Bumped when the summary's shape or meaning changes (v3: `popularity` became recent popularity, warm/cold apart):
 * older summaries are not reused.
 */
const SUMMARY_FORMAT = 'v3';

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
  protocol: z.string(),
  popularity_days: z.number().positive(),
  metrics: z.object({
    model: z.record(z.string(), z.number()),
    popularity: z.record(z.string(), z.number()),
    popularity_all_time: z.record(z.string(), z.number()),
    baseline: z.record(z.string(), z.number()).optional(),
  }),
  overall: PyPopulation,
  populations: z.object({ warm: PyPopulation, cold: PyPopulation }),
  slices: z.record(z.string(), PyPopulation.extend({ dimension: z.string(), value: z.string() })),
  coverage: PerRanker(z.number()),
  novelty: PerRanker(z.number().nullable()),
  bootstrap: z.object({ n_resamples: z.number().int(), confidence: z.number(), seed: z.number().int() }),
});
type PyReport = z.infer<typeof PyReport>;
type PyPopulation = z.infer<typeof PyPopulation>;

/** The report does not fit its contract: a mismatch with models/evaluate.py, so never retried. */
export class EvaluationReportError extends PythonOutputError {
  override readonly name = 'EvaluationReportError';
}

/** Parses models/evaluate.py's report; the error names the file and each field that does not fit. */
export function parseEvaluationReport(raw: unknown, source: string): PyReport {
  const parsed = PyReport.safeParse(raw);
  if (!parsed.success) {
    throw new EvaluationReportError(`${source} is not a valid evaluation report: ${describeIssues(parsed.error)}`);
  }
  const report = parsed.data;
  const hasBaseline = report.rankers.includes('baseline');
  const populations: [string, PyPopulation][] = [
    ['overall', report.overall],
    ['populations.warm', report.populations.warm],
    ['populations.cold', report.populations.cold],
    ...Object.entries(report.slices),
  ];
  for (const [name, pop] of populations) {
    if (pop.n_users === 0) continue;
    const rankers = ['model', 'popularity', 'popularity_all_time', ...(hasBaseline ? ['baseline'] : [])];
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

function population(pop: PyPopulation, hasBaseline: boolean) {
  return { nUsers: pop.n_users, small: pop.small, ...populationFigures(pop, hasBaseline) };
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
    popularityDays: report.popularity_days,
    popularityAllTime: report.metrics.popularity_all_time,
    protocol: report.protocol,
    populations: {
      warm: population(report.populations.warm, hasBaseline),
      cold: population(report.populations.cold, hasBaseline),
    },
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
        { dimension: s.dimension, value: s.value, ...population(s, hasBaseline) },
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

// The result line of models/evaluate.py; the figures are read from the report file it names.
const PyResult = z.object({ report_path: z.string(), table_path: z.string() });

export function evaluationActivities(deps: ActivityDeps) {
  const { store } = deps;
  const dataset = (manifestUri: string) => localDataset(manifestUri, store, deps.config.cacheDir);
  // Arrow functions, not methods: the worker and tests call activities detached from this object.
  return {
    evaluate: async (input: EvaluateInput): Promise<EvaluationResult> => {
      const k = input.k ?? 10;
      const baseline = input.baseline ?? undefined;
      const key = evaluationKey(k, baseline);
      const reportUri = `${input.training.uri}${key}.json`;
      const tableUri = `${input.training.uri}${key}.md`;
      return runPythonStep(deps, {
        name: 'evaluation',
        summaryUri: `${input.training.uri}${key}.summary.json`,
        summary: EvaluationResult,
        nonRetryable: ['UsageError', 'DataError', 'CheckpointError'],
        heartbeat: { stage: 'evaluate' },
        work: async (ctx) => {
          const dataDir = await dataset(input.dataset.manifestUri);
          const modelPath = await localModel(input.training.modelUri, ctx.dir, store);
          const out = path.join(ctx.dir, 'report.json');
          const table = path.join(ctx.dir, 'report.md');
          const args = ['--data-dir', dataDir, '--model', modelPath, '--out', out, '--table-out', table];
          args.push('--k', String(k));
          if (baseline) {
            const baselineData = await dataset(baseline.dataset.manifestUri);
            const baselineModel = await localModel(baseline.modelUri, path.join(ctx.dir, 'baseline'), store);
            args.push('--baseline-model', baselineModel, '--baseline-data-dir', baselineData);
          }
          const result = await ctx.python({ module: 'models.evaluate', args, result: PyResult });
          const raw = JSON.parse(await fs.readFile(result.report_path, 'utf8')) as unknown;
          const report = parseEvaluationReport(raw, result.report_path);
          await store.putFile(reportUri, result.report_path);
          await store.putFile(tableUri, result.table_path);
          return summarise(report, { reportUri, tableUri, baselineVersion: baseline?.modelVersion });
        },
      });
    },
  };
}
