/**
 * The ODE solver table: the continuous-time family `ode_rnn` (models/continuous_time.py) with the Euler and RK4
 * solvers against its discrete baseline `gru` (same hyperparameters) on MovieLens-100K's time split. Full-ranking
 * NDCG@10 with 95% bootstrap intervals; the same under injected time noise (every gap jittered by a lognormal
 * factor, or the user's gaps shuffled: the robustness claim of the continuous-time design); the paired difference
 * to the GRU; single-request latency of the exported ONNX graphs (onnxruntime, 1 thread, p50/p99).
 *   npx tsx bench/ode-solvers.ts <ml-100k.inter | dataset dir> [runs=1000]
 *
 * A dataset directory (manifest.json + splits) is used as is; an .inter file goes through the ETL first, as in
 * bench/quality.ts (the local stack must be up). Each model trains with `python -m models.train` in one process
 * (bounded for 2 shared cores; the configs are printed) and is exported with `python -m models.export`; both are
 * cached under ~/.cache/recsys/bench/ode-solvers, keyed by dataset, config and the model code, so a second run only
 * measures. The measurements are bench/ode_solvers.py's (its docstring defines the noise and the protocol).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildDatasetVersion } from '../activities/etl';
import { REPO_ROOT, runPython } from '../activities/python-process';
import { stageSources } from '../cli/commands/train';
import { localDataset } from '../lib/dataset/cache';
import { machine } from './common';

interface Variant {
  label: string;
  config: Record<string, unknown>;
}

/**
 * Same hyperparameters for all; only the family and solver change. Euler with 4 steps and RK4 with 1 step make the
 * same number of drift evaluations per event (4); Euler with 1 step is the cheapest ODE. (RK4 with 2 steps measured
 * NDCG@10 0.3380 against RK4 x1's 0.3365 and Euler x4's 0.3391, and trained for 2 minutes: left out.) history_len 10
 * keeps each training near a minute on a busy 2-core machine: the generic loop recomputes the whole history per
 * sample.
 */
const COMMON = {
  embedding_dim: 64,
  hidden_dim: 64,
  history_len: 10,
  dropout: 0.2,
  epochs: 3,
  batch_size: 512,
  lr: 0.003,
  time_scale_seconds: 86400,
  log_every_seconds: 60,
};
const VARIANTS: Variant[] = [
  { label: 'gru', config: { ...COMMON, model: 'gru' } },
  { label: 'ode euler x1', config: { ...COMMON, model: 'ode_rnn', ode_solver: 'euler', ode_steps: 1 } },
  { label: 'ode euler x4', config: { ...COMMON, model: 'ode_rnn', ode_solver: 'euler', ode_steps: 4 } },
  { label: 'ode rk4 x1', config: { ...COMMON, model: 'ode_rnn', ode_solver: 'rk4', ode_steps: 1 } },
];

const CACHE = path.join(os.homedir(), '.cache', 'recsys', 'bench', 'ode-solvers');
const MODEL_CODE = ['checkpoint', 'config', 'continuous_time', 'data', 'families', 'train'];

async function datasetDir(arg: string): Promise<string> {
  const stat = await fs.stat(arg).catch(() => undefined);
  if (stat?.isDirectory()) {
    await fs.access(path.join(arg, 'manifest.json'));
    return path.resolve(arg);
  }
  if (!stat) throw new Error(`${arg}: no such file or directory`);
  const [source] = await stageSources('bench-quality-ml-100k', [arg]);
  const version = await buildDatasetVersion({
    name: 'bench-quality-ml-100k', // bench/quality.ts's name: the same content-addressed version
    sources: [source!],
    config: { format: 'recbole', ratingRange: [1, 5] },
  });
  return localDataset(version.manifestUri);
}

async function cacheKey(dir: string, cfg: Record<string, unknown>): Promise<string> {
  const h = createHash('sha256')
    .update(await fs.readFile(path.join(dir, 'manifest.json')))
    .update(JSON.stringify(cfg));
  for (const m of MODEL_CODE) h.update(m).update(await fs.readFile(path.join(REPO_ROOT, 'models', `${m}.py`)));
  return h.digest('hex').slice(0, 16);
}

interface Trained {
  model: string;
  onnx: string;
  trainSeconds: number;
  samplesPerSec: number;
  exportSeconds: number;
  reused: boolean;
}

async function trainAndExport(dir: string, variant: Variant): Promise<Trained> {
  const out = path.join(CACHE, await cacheKey(dir, variant.config));
  const done = path.join(out, 'trained.json');
  try {
    return { ...(JSON.parse(await fs.readFile(done, 'utf8')) as Trained), reused: true };
  } catch {
    // not trained yet
  }
  await fs.mkdir(out, { recursive: true });
  const train = await runPython({
    module: 'models.train',
    args: ['--data-dir', dir, '--out-dir', out, '--config-json', JSON.stringify(variant.config)],
  });
  const onnx = path.join(out, 'model.onnx');
  const t0 = performance.now();
  await runPython({
    module: 'models.export',
    args: ['--model', train.model_path as string, '--out', onnx, '--top-k', '100'],
  });
  const trained: Trained = {
    model: train.model_path as string,
    onnx,
    trainSeconds: train.train_seconds as number,
    samplesPerSec: train.samples_per_sec as number,
    exportSeconds: (performance.now() - t0) / 1000,
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
interface ModelFigures {
  label: string;
  ndcg: Record<string, Interval>;
  ndcg_warm: Record<string, Interval>;
  drop_warm: Record<string, Interval>;
  vs_first: Record<string, Interval>;
  p50_ms: number;
  p99_ms: number;
}

const f4 = (x: number) => x.toFixed(4);
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;
const iv = (i: Interval) => `${f4(i.point)} [${f4(i.lo)}, ${f4(i.hi)}]`;
const div = (i: Interval) => `${signed(i.point)} [${signed(i.lo)}, ${signed(i.hi)}]`;

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (!arg) throw new Error('usage: bench/ode-solvers.ts <ml-100k.inter | dataset dir> [runs]');
  const runs = Number(process.argv[3] ?? 1000);
  const dir = await datasetDir(arg);
  console.log(`ODE solver benchmark on ${machine()}`);
  console.log(`  MovieLens-100K, time split (${dir})`);
  console.log(`  common config ${JSON.stringify(COMMON)}; train: models.train, 1 process`);
  const trained: Trained[] = [];
  for (const v of VARIANTS) {
    const t = await trainAndExport(dir, v);
    trained.push(t);
    const own = Object.fromEntries(Object.entries(v.config).filter(([k]) => !(k in COMMON)));
    console.log(
      `  ${v.label.padEnd(13)} ${JSON.stringify(own)}: ` +
        `train ${t.trainSeconds.toFixed(0)} s (${Math.round(t.samplesPerSec).toLocaleString('en-US')} samples/s), ` +
        `export ${t.exportSeconds.toFixed(0)} s${t.reused ? ' (cached)' : ''}`,
    );
  }
  const result = await runPython({
    module: 'bench.ode_solvers',
    args: [
      ...['--data-dir', dir, '--runs', String(runs), '--warmup', '100'],
      ...[
        '--models',
        JSON.stringify(VARIANTS.map((v, i) => ({ label: v.label, model: trained[i]!.model, onnx: trained[i]!.onnx }))),
      ],
    ],
  });
  const conditions = result.conditions as string[];
  const models = result.models as ModelFigures[];
  const first = models[0]!.label;
  console.log(
    `\n  ${String(result.n_users)} test users (${String(result.n_warm)} with a history), full ranking, k = 10, ` +
      `history_len ${String(result.history_len)}; 95% bootstrap intervals (users resampled, paired)`,
  );
  console.log(
    '  time noise: jitter s = every gap (between events, and last event -> query) x exp(s N(0,1)); shuffled = the ' +
      "user's gaps permuted (mean of 5 draws each); no time = every gap 0",
  );
  console.log('\n  NDCG@10, all test users');
  console.log(`  ${'model'.padEnd(13)} ${conditions.map((c) => c.padEnd(25)).join(' ')}`);
  for (const m of models)
    console.log(`  ${m.label.padEnd(13)} ${conditions.map((c) => iv(m.ndcg[c]!).padEnd(25)).join(' ')}`);
  console.log(`\n  difference to ${first} (paired), all test users`);
  console.log(`  ${'model'.padEnd(13)} ${conditions.map((c) => c.padEnd(27)).join(' ')}`);
  for (const m of models.slice(1))
    console.log(`  ${m.label.padEnd(13)} ${conditions.map((c) => div(m.vs_first[c]!).padEnd(27)).join(' ')}`);
  console.log('\n  warm users: NDCG@10 clean, and its change under noise (noisy - clean, paired)');
  console.log(
    `  ${'model'.padEnd(13)} ${'clean'.padEnd(25)} ${conditions
      .slice(1)
      .map((c) => c.padEnd(27))
      .join(' ')}`,
  );
  for (const m of models)
    console.log(
      `  ${m.label.padEnd(13)} ${iv(m.ndcg_warm.clean!).padEnd(25)} ` +
        conditions
          .slice(1)
          .map((c) => div(m.drop_warm[c]!).padEnd(27))
          .join(' '),
    );
  console.log(`\n  latency, exported graph (top-100), onnxruntime 1 thread, batch 1, ${runs} interleaved requests`);
  console.log(`  ${'model'.padEnd(13)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)}`);
  for (const m of models)
    console.log(`  ${m.label.padEnd(13)} ${m.p50_ms.toFixed(3).padStart(8)} ${m.p99_ms.toFixed(3).padStart(8)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
