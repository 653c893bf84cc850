/**
 * The quality table: every family on every protocol, full ranking, 95% bootstrap intervals, beside recent and
 * all-time popularity and the published figures of the same protocol. Datasets: MovieLens-100K (real) and the
 * ML-1M-sized synthetic set. Protocols (models/protocols.py): `time` (the global time split the gates use; warm users,
 * those with history before the test window, reported apart from cold ones), `loo` (per-user leave-last-out) and
 * `random` (RecBole's per-user random 8:1:1). Every model trains under torchrun with 2 processes (gloo), as the
 * pipeline does, with configs bounded for two CPU cores (printed); trained models are cached under
 * ~/.cache/recsys/bench/quality keyed by dataset version, protocol, config and the training code in models/, so
 * bench/quantization.ts, bench/cascade-router.ts and a second run reuse them.
 *   npx tsx bench/quality.ts <path to ml-100k.inter> [protocols=time,loo,random] [datasets=ml-100k,ml-1m-synthetic]
 *     [families=all, or labels separated by commas, e.g. "two-tower,mf (iALS)"]
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
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
  /** `cascade`: three stage graphs (no int8 export; bench/quantization.ts skips it). */
  kind?: 'single' | 'cascade';
  /** TrainConfig overrides per dataset label. */
  config: Record<string, Record<string, unknown>>;
}

const QUIET = { log_every_seconds: 60 };
const LIGHTGCN = {
  model: 'lightgcn',
  embedding_dim: 64,
  history_len: 200,
  n_gcn_layers: 2,
  gcn_reg: 1e-4,
  lr: 0.01,
  batch_size: 4096,
};
/** The ODE solver benchmark's shared config (bench/ode-solvers.ts): the GRU and the ODE-RNN differ only in time. */
const RNN = { history_len: 10, embedding_dim: 64, hidden_dim: 64, epochs: 3, lr: 0.003 };
const SYN = 'ML-1M-sized synthetic';
const ML100K = 'MovieLens-100K';
/** Bounded for 2 CPU cores: the sequential models cost far more per sample than the two-tower model. */
const BASE_FAMILIES: Family[] = [
  {
    label: 'two-tower',
    config: {
      [SYN]: { model: 'two_tower', epochs: 3, ...QUIET },
      [ML100K]: { model: 'two_tower', epochs: 5, ...QUIET },
    },
  },
  {
    label: 'sequential',
    config: {
      [SYN]: { model: 'sequential', epochs: 1, lr: 0.002, ...QUIET },
      [ML100K]: { model: 'sequential', epochs: 5, ...QUIET },
    },
  },
  {
    // Chosen on the validation period (models/mf.py's helper notes): long histories help the fold-in.
    label: 'mf (iALS)',
    config: {
      [SYN]: { model: 'mf', epochs: 10, embedding_dim: 64, history_len: 200, als_reg: 100, als_alpha: 20, ...QUIET },
      [ML100K]: { model: 'mf', epochs: 10, embedding_dim: 64, history_len: 200, als_reg: 100, als_alpha: 20, ...QUIET },
    },
  },
  {
    label: 'lightgcn',
    config: {
      [SYN]: { ...LIGHTGCN, epochs: 10, ...QUIET },
      [ML100K]: { ...LIGHTGCN, epochs: 40, ...QUIET },
    },
  },
  {
    label: 'gru',
    config: {
      [SYN]: { ...RNN, model: 'gru', epochs: 1, ...QUIET },
      [ML100K]: { ...RNN, model: 'gru', ...QUIET },
    },
  },
  {
    label: 'ode-rnn (euler)',
    config: {
      [SYN]: { ...RNN, model: 'ode_rnn', ode_solver: 'euler', ode_steps: 1, epochs: 1, ...QUIET },
      [ML100K]: { ...RNN, model: 'ode_rnn', ode_solver: 'euler', ode_steps: 1, ...QUIET },
    },
  },
  {
    // Two-tower recall: with LightGCN's, the ranking stages did not lift NDCG on ML-100K (models/cascade.py notes).
    label: 'cascade',
    kind: 'cascade',
    config: {
      [SYN]: { model: 'cascade', recall_model: 'two_tower', epochs: 3, ...QUIET },
      [ML100K]: { model: 'cascade', recall_model: 'two_tower', epochs: 5, ...QUIET },
    },
  },
];

/** A family with the recent-popularity prior on top (models/recent_prior.py): + beta * log1p(the item's count in the
 * last 14 days, evaluate's recent-popularity window), beta chosen on the valid split after training. */
const withRecentPrior = (f: Family): Family => ({
  label: `${f.label} + recent prior`,
  config: Object.fromEntries(Object.entries(f.config).map(([ds, cfg]) => [ds, { ...cfg, recent_prior_days: 14 }])),
});
const WITH_PRIOR = ['mf (iALS)', 'lightgcn', 'ode-rnn (euler)'];
export const FAMILIES: Family[] = [
  ...BASE_FAMILIES,
  ...BASE_FAMILIES.filter((f) => WITH_PRIOR.includes(f.label)).map(withRecentPrior),
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

/** The modules that do not make a trained model (they run again on every bench run); every other one does. */
const NOT_TRAINING = new Set(['evaluate', 'export', 'cascade_export', 'quantize', 'protocols', 'stage_metrics']);

async function trainingCodeVersion(): Promise<string> {
  const h = createHash('sha256');
  const modules = (await fs.readdir(path.join(REPO_ROOT, 'models')))
    .filter((f) => f.endsWith('.py') && !NOT_TRAINING.has(f.slice(0, -3)))
    .sort();
  for (const m of modules) h.update(m).update(await fs.readFile(path.join(REPO_ROOT, 'models', m)));
  return h.digest('hex').slice(0, 12);
}

export interface Trained {
  modelPath: string;
  trainSeconds: number;
  samplesPerSec: number;
  reused: boolean;
  /** models/train.py's `recent_prior` block (the chosen beta, ...), for configs with recent_prior_days > 0. */
  recentPrior?: { beta: number; 'valid_ndcg@10': number | null; 'base_valid_ndcg@10': number | null };
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
    ...(result.recent_prior ? { recentPrior: result.recent_prior as Trained['recentPrior'] } : {}),
  };
  await fs.writeFile(done, JSON.stringify(trained));
  return trained;
}

export const PROTOCOLS = ['time', 'loo', 'random'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** The dataset re-split by a protocol (models/protocols.py), cached beside the trained models; `time` is itself. */
export async function protocolDataset(ds: BenchDataset, protocol: Protocol): Promise<BenchDataset> {
  if (protocol === 'time') return ds;
  const dir = path.join(CACHE, 'protocols', ds.ref.version, protocol);
  if (!existsSync(path.join(dir, 'manifest.json')))
    await runPython({
      module: 'models.protocols',
      args: ['--data-dir', ds.dir, '--protocol', protocol, '--out-dir', dir, '--seed', '0'],
    });
  return { label: ds.label, ref: { ...ds.ref, version: `${ds.ref.version}-${protocol}` }, dir };
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
  differences?: Record<string, Record<string, Interval>>;
}
interface Report {
  n_users: number;
  n_warm_users?: number;
  popularity_days?: number;
  metrics: Record<string, Record<string, number>>;
  overall?: Population;
  populations?: { warm?: Population; cold?: Population };
  stages?: Record<string, unknown>;
}

async function evaluate(ds: BenchDataset, modelPath: string, protocol: Protocol): Promise<Report> {
  const out = path.join(path.dirname(modelPath), `eval-${protocol}.json`);
  const result = await runPython({
    module: 'models.evaluate',
    args: ['--data-dir', ds.dir, '--model', modelPath, '--out', out, '--k', '10'],
  });
  return JSON.parse(await fs.readFile(result.report_path as string, 'utf8')) as Report;
}

const f4 = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(4));
function cell(pop: Population | undefined, ranker: string, metric: string): string {
  const iv = pop?.intervals?.[ranker]?.[metric];
  return iv ? `${f4(iv.point)} [${f4(iv.lo)}, ${f4(iv.hi)}]` : 'n/a';
}
function diffCell(pop: Population | undefined, metric: string): string {
  const d = pop?.differences?.vs_popularity?.[metric];
  if (!d) return 'n/a';
  const sign = (x: number) => (x >= 0 ? '+' : '') + x.toFixed(4);
  return `${sign(d.point)} [${sign(d.lo)}, ${sign(d.hi)}]${d.lo > 0 ? ' *' : ''}`;
}

/**
 * Published figures of the same protocols (full ranking), beside ours in the table's notes. Our ML-1M-sized set is
 * synthetic, so the ML-1M figures are the scale's reference, not a like-for-like comparison.
 */
const ANCHORS: Record<string, Record<Protocol, string[]>> = {
  [ML100K]: {
    time: ['(no published figure of this global time split; recent popularity is the floor: Ji et al. 2023)'],
    loo: ['GRU4Rec HR@10 0.1103, NDCG@10 0.0513 (RecBole sequential quick start)'],
    random: ['BPR Recall@10 0.2523, NDCG@10 0.2920, HR@10 0.7953 (RecBole quick start)'],
  },
  [SYN]: {
    time: ['(synthetic: no published figure)'],
    loo: ['real ML-1M: SASRec+ (cross-entropy) NDCG@10 0.1821 (Klenitskiy & Vasilev 2023)'],
    random: ['real ML-1M: Pop NDCG@10 0.1006, BPR 0.2407, LightGCN 0.2476 (RecBole benchmark)'],
  },
};

/** The families named on the command line (all by default); an unknown label is an error that lists the known ones. */
function selectFamilies(arg: string | undefined): Family[] {
  if (!arg || arg === 'all') return FAMILIES;
  return arg.split(',').map((label) => {
    const family = FAMILIES.find((f) => f.label === label.trim());
    if (!family) throw new Error(`unknown family "${label}" (${FAMILIES.map((f) => f.label).join(', ')})`);
    return family;
  });
}

async function main(): Promise<void> {
  const inter = process.argv[2];
  if (!inter) throw new Error('usage: bench/quality.ts <ml-100k.inter> [protocols] [datasets]');
  const protocols = (process.argv[3] ?? PROTOCOLS.join(',')).split(',') as Protocol[];
  for (const p of protocols)
    if (!PROTOCOLS.includes(p)) throw new Error(`unknown protocol ${p} (${PROTOCOLS.join(', ')})`);
  const wanted = (process.argv[4] ?? 'ml-100k,ml-1m-synthetic').split(',');
  const families = selectFamilies(process.argv[5]);
  const t0 = performance.now();
  const datasets = (await benchDatasets(inter)).filter((d) =>
    wanted.includes(d.label === ML100K ? 'ml-100k' : 'ml-1m-synthetic'),
  );
  console.log(`Quality table on ${machine()}`);
  console.log('  full ranking, history items excluded, k = 10; 95% bootstrap intervals (1000 resamples) in brackets');
  for (const base of datasets) {
    for (const protocol of protocols) {
      const ds = await protocolDataset(base, protocol);
      const c = base.ref.counts;
      console.log(`\n## ${ds.label}, protocol ${protocol} (${c.users} users, ${c.items} items)`);
      const rows: { label: string; report: Report; cfg: Record<string, unknown>; trained: Trained }[] = [];
      for (const family of families) {
        const cfg = family.config[ds.label];
        if (!cfg) continue;
        const trained = await trainCached(ds, cfg);
        rows.push({ label: family.label, report: await evaluate(ds, trained.modelPath, protocol), cfg, trained });
      }
      const first = rows[0]!.report;
      const warm = protocol === 'time';
      console.log(
        `  ${first.n_users} evaluated users` +
          (warm ? ` (${first.n_warm_users ?? '?'} warm)` : '') +
          `; recent popularity = the last ${first.popularity_days ?? '?'} days before each cut-off`,
      );
      const header = [
        'ranker',
        'NDCG@10',
        'Recall@10',
        'HR@10',
        ...(warm ? ['warm NDCG@10', 'warm Δ vs recent pop'] : []),
      ];
      console.log(`| ${header.join(' | ')} |`);
      console.log(`|${header.map(() => '---').join('|')}|`);
      const line = (label: string, r: Report, ranker: string) => {
        const cells = [
          label,
          cell(r.overall, ranker, 'ndcg@10'),
          cell(r.overall, ranker, 'recall@10'),
          cell(r.overall, ranker, 'hr@10'),
          ...(warm
            ? [
                cell(r.populations?.warm, ranker, 'ndcg@10'),
                ranker === 'model' ? diffCell(r.populations?.warm, 'ndcg@10') : '',
              ]
            : []),
        ];
        console.log(`| ${cells.join(' | ')} |`);
      };
      line('recent popularity', first, 'popularity');
      line('all-time popularity', first, 'popularity_all_time');
      for (const r of rows) line(r.label, r.report, 'model');
      console.log(`  vs recent popularity, all users (NDCG@10 difference, * = 95% CI above zero):`);
      for (const r of rows) console.log(`    ${r.label.padEnd(12)} ${diffCell(r.report.overall, 'ndcg@10')}`);
      for (const r of rows) if (r.report.stages) console.log(`  ${r.label} stages: ${JSON.stringify(r.report.stages)}`);
      console.log(`  published (same protocol): ${ANCHORS[ds.label]![protocol].join('; ')}`);
      console.log('  training (torchrun, 2 processes):');
      for (const r of rows)
        console.log(
          `    ${r.label.padEnd(12)} ${r.trained.trainSeconds.toFixed(0).padStart(5)} s, ` +
            `${Math.round(r.trained.samplesPerSec).toLocaleString('en-US').padStart(9)} samples/s` +
            `${r.trained.reused ? ' (cached)' : ''}  ${JSON.stringify(r.cfg)}` +
            (r.trained.recentPrior
              ? `  prior beta ${r.trained.recentPrior.beta} (valid NDCG@10 ` +
                `${f4(r.trained.recentPrior['valid_ndcg@10'] ?? undefined)}, ` +
                `${f4(r.trained.recentPrior['base_valid_ndcg@10'] ?? undefined)} without)`
              : ''),
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
