/**
 * Quality table: popularity, two-tower and the sequential model (SASRec-style) on the ML-1M-sized synthetic set and
 * on the real MovieLens-100K; Recall@10 and NDCG@10 with full ranking on the time split (models/evaluate.py, 95%
 * bootstrap intervals when the report has them), then the per-slice NDCG@10 summary of the report.
 *   npx tsx bench/quality.ts <path to ml-100k.inter>
 *
 * Each model trains under torchrun with 2 processes (gloo), as the pipeline does. Training is bounded for two CPU
 * cores (the configs are printed); trained models are cached under ~/.cache/recsys/bench/quality keyed by dataset
 * version, config and the training code in models/, so bench/quantization.ts (and a second run) reuses them.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localDataset } from '../lib/dataset/cache';
import { buildDatasetVersion } from '../activities/etl';
import type { DatasetVersion } from '../lib/dataset/ref';
import { PythonStepError, REPO_ROOT, runPython } from '../activities/python-process';
import { stageSources } from '../cli/commands/train';
import { ML1M_LIKE } from '../tests/data/synthetic';
import { machine, syntheticSource } from './common';

export interface BenchDataset {
  label: string;
  ref: DatasetVersion;
  dir: string;
}

export interface Family {
  label: string;
  /** TrainConfig overrides per dataset label. */
  config: Record<string, Record<string, unknown>>;
}

const QUIET = { log_every_seconds: 60 };
/** Bounded for 2 CPU cores: the sequential model costs ~25x two-tower per sample (attention over 50 positions). */
export const FAMILIES: Family[] = [
  {
    label: 'two-tower',
    config: {
      'ML-1M-sized synthetic': { model: 'two_tower', epochs: 3, ...QUIET },
      'MovieLens-100K': { model: 'two_tower', epochs: 5, ...QUIET },
    },
  },
  {
    label: 'sequential',
    config: {
      'ML-1M-sized synthetic': { model: 'sequential', epochs: 1, lr: 0.002, ...QUIET },
      'MovieLens-100K': { model: 'sequential', epochs: 5, ...QUIET },
    },
  },
];

const CACHE = path.join(os.homedir(), '.cache', 'recsys', 'bench', 'quality');

/** The ML-1M-sized synthetic set and MovieLens-100K as dataset versions (through the real ETL), local copies. */
export async function benchDatasets(inter: string): Promise<BenchDataset[]> {
  // Fixed names: the versions are content-addressed, so a second run finds them instead of writing new ones.
  const synthetic = await buildDatasetVersion({
    name: 'bench-quality-ml1m-synthetic',
    sources: [await syntheticSource('bench-quality-ml1m-synthetic', ML1M_LIKE)],
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  });
  const [ml100k] = await stageSources('bench-quality-ml-100k', [inter]);
  const real = await buildDatasetVersion({
    name: 'bench-quality-ml-100k',
    sources: [ml100k!],
    config: { format: 'recbole', ratingRange: [1, 5] },
  });
  return [
    { label: 'ML-1M-sized synthetic', ref: synthetic, dir: await localDataset(synthetic.manifestUri) },
    { label: 'MovieLens-100K', ref: real, dir: await localDataset(real.manifestUri) },
  ];
}

/** The modules that make a trained model (not evaluate/export/quantize: they run again on every bench run). */
const TRAINING_CODE = ['checkpoint', 'config', 'data', 'distributed', 'families', 'train', 'sequential', 'two_tower'];

async function trainingCodeVersion(): Promise<string> {
  const h = createHash('sha256');
  for (const m of TRAINING_CODE) h.update(m).update(await fs.readFile(path.join(REPO_ROOT, 'models', `${m}.py`)));
  return h.digest('hex').slice(0, 12);
}

export interface Trained {
  modelPath: string;
  trainSeconds: number;
  samplesPerSec: number;
  reused: boolean;
}

/** Trains (torchrun, 2 processes) or reuses a cached model of the same dataset version, config and code. */
export async function trainCached(ds: BenchDataset, cfg: Record<string, unknown>): Promise<Trained> {
  const key = createHash('sha256')
    .update(JSON.stringify({ version: ds.ref.version, cfg, code: await trainingCodeVersion() }))
    .digest('hex')
    .slice(0, 16);
  const dir = path.join(CACHE, ds.ref.version, key);
  const done = path.join(dir, 'train.json');
  try {
    return { ...(JSON.parse(await fs.readFile(done, 'utf8')) as Trained), reused: true };
  } catch {
    // not trained yet
  }
  await fs.mkdir(dir, { recursive: true });
  const run = () =>
    runPython({
      module: 'models.train',
      args: ['--data-dir', ds.dir, '--out-dir', dir, '--config-json', JSON.stringify(cfg)],
      nprocPerNode: 2,
    });
  let result;
  try {
    result = await run();
  } catch (err) {
    // A rank of torchrun can die in gloo's setup on a busy machine; say so and try once more (the figures are
    // those of the run that finished).
    if (!(err instanceof PythonStepError)) throw err;
    console.error(`  training ${JSON.stringify(cfg)} failed (${err.message.split('\n')[0]}); retrying once`);
    result = await run();
  }
  const trained: Trained = {
    modelPath: result.model_path as string,
    trainSeconds: result.train_seconds as number,
    samplesPerSec: result.samples_per_sec as number,
    reused: false,
  };
  await fs.writeFile(done, JSON.stringify(trained));
  return trained;
}

interface Interval {
  point: number;
  lo: number;
  hi: number;
}
interface Population {
  n_users: number;
  small?: boolean;
  intervals?: Record<string, Record<string, Interval>>;
}
interface Report {
  n_users: number;
  metrics: Record<string, Record<string, number>>;
  overall?: Population;
  slices?: Record<string, Population>;
}

async function evaluate(ds: BenchDataset, modelPath: string): Promise<Report> {
  const out = path.join(path.dirname(modelPath), 'eval.json');
  const result = await runPython({
    module: 'models.evaluate',
    args: ['--data-dir', ds.dir, '--model', modelPath, '--out', out, '--k', '10'],
  });
  return JSON.parse(await fs.readFile(result.report_path as string, 'utf8')) as Report;
}

const f4 = (x: number | undefined) => (x === undefined ? '   n/a' : x.toFixed(4));
function cell(report: Report, ranker: string, metric: string): string {
  const point = report.metrics[ranker]?.[metric];
  const iv = report.overall?.intervals?.[ranker]?.[metric];
  return iv ? `${f4(point)} [${f4(iv.lo)}, ${f4(iv.hi)}]` : f4(point);
}

async function main(): Promise<void> {
  const inter = process.argv[2];
  if (!inter) throw new Error('usage: bench/quality.ts <ml-100k.inter>');
  const t0 = performance.now();
  const datasets = await benchDatasets(inter);
  console.log(`Quality benchmark on ${machine()}`);
  console.log('  full ranking on the time split (test = last 10% of time), history items excluded; k = 10');
  for (const ds of datasets) {
    const c = ds.ref.counts;
    console.log(`\n${ds.label}: ${c.users} users, ${c.items} items, train/valid/test ${c.train}/${c.valid}/${c.test}`);
    const reports: { label: string; report: Report }[] = [];
    const lines: string[] = [];
    for (const family of FAMILIES) {
      const cfg = family.config[ds.label]!;
      const trained = await trainCached(ds, cfg);
      reports.push({ label: family.label, report: await evaluate(ds, trained.modelPath) });
      lines.push(
        `  ${family.label.padEnd(11)} ${JSON.stringify(cfg)}: ${trained.trainSeconds.toFixed(0)} s, ` +
          `${Math.round(trained.samplesPerSec).toLocaleString('en-US')} samples/s${trained.reused ? ' (cached)' : ''}`,
      );
    }
    console.log('  training (torchrun, 2 processes):');
    for (const l of lines) console.log(l);
    const first = reports[0]!.report;
    console.log(`  ${first.n_users} test users; 95% bootstrap intervals in brackets when the report has them`);
    console.log(`  ${'ranker'.padEnd(12)} ${'Recall@10'.padEnd(26)} NDCG@10`);
    const rows: [string, Report, string][] = [
      ['popularity', first, 'popularity'],
      ...reports.map((r): [string, Report, string] => [r.label, r.report, 'model']),
    ];
    for (const [label, report, ranker] of rows)
      console.log(
        `  ${label.padEnd(12)} ${cell(report, ranker, 'recall@10').padEnd(26)} ${cell(report, ranker, 'ndcg@10')}`,
      );
    const slices = first.slices;
    if (!slices) {
      console.log('  (no slices in the evaluation report)');
      continue;
    }
    console.log(`  NDCG@10 by slice (* = fewer users than the report's minimum):`);
    console.log(
      `  ${'slice'.padEnd(26)} ${'users'.padStart(6)}  ${['popularity', ...reports.map((r) => r.label)].map((l) => l.padStart(11)).join('')}`,
    );
    for (const [name, pop] of Object.entries(slices)) {
      const point = (r: Report, ranker: string) => r.slices?.[name]?.intervals?.[ranker]?.['ndcg@10']?.point;
      const values = [point(first, 'popularity'), ...reports.map((r) => point(r.report, 'model'))];
      console.log(
        `  ${(name + (pop.small ? ' *' : '')).padEnd(26)} ${String(pop.n_users).padStart(6)}  ${values.map((v) => f4(v).padStart(11)).join('')}`,
      );
    }
  }
  console.log(`\n  total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

if (require.main === module)
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
