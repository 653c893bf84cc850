/**
 * The continuousTraining pipeline end to end, per family: wall time by step and the orchestration's share (everything
 * but the Python processes' own wall time: Temporal scheduling, activities' object-store I/O, MLflow calls, the
 * TypeScript gates). Fresh model names, so no step is reused; the dataset version is built by the first run and reused
 * (content-addressed) by the others, so ETL counts once. Runs its own worker in-process on a private task queue.
 *   npx tsx bench/pipeline.ts <path to ml-100k.inter> [dataset=ml-100k|ml-1m-synthetic] [families=two-tower]
 * Families are bench/quality.ts's labels (its per-dataset configs, bounded for two CPU cores), comma-separated, or
 * `all`. The Python processes are timed by wrapping the interpreter (and its torchrun) in scripts that log each
 * process's start and end: their union is the Python time, the rest of the workflow's wall time is orchestration.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { stageSources } from '../cli/commands/train';
import { duration } from '../cli/format';
import { config, loadConfig } from '../lib/config';
import { nativeConnectionOptions, temporalConnectionOptions } from '../lib/temporal-connection';
import { ML1M_LIKE } from '../tests/data/synthetic';
import { createTrainingWorker } from '../worker/create-worker';
import { continuousTraining } from '../workflows/continuous-training';
import type { ContinuousTrainingInput } from '../workflows/training-api';
import { benchName, machine, syntheticSource } from './common';
import { FAMILIES, type Family } from './quality';

const DATASETS = {
  'ml-100k': { label: 'MovieLens-100K' },
  'ml-1m-synthetic': { label: 'ML-1M-sized synthetic' },
} as const;
type DatasetKey = keyof typeof DATASETS;

type ContinuousTrainingDataset = NonNullable<ContinuousTrainingInput['dataset']>;

/** Python processes' [start, end] in epoch seconds, as the wrapper scripts logged them. */
type Interval = [number, number];

/**
 * A directory with `python` and `torchrun` that log `<start> <end>` per process to `log` and run the real ones.
 * torchrun's own workers are started by the real torchrun, so only the step's top-level process is timed.
 */
async function timedInterpreter(real: string, log: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-python-'));
  for (const [name, target] of [
    ['python', real],
    ['torchrun', path.join(path.dirname(real), 'torchrun')],
  ] as const) {
    const script = [
      '#!/usr/bin/env bash',
      'start=$(date +%s.%N)',
      `"${target}" "$@"`,
      'rc=$?',
      `echo "$start $(date +%s.%N)" >> "${log}"`,
      'exit $rc',
      '',
    ].join('\n');
    await fs.writeFile(path.join(dir, name), script, { mode: 0o755 });
  }
  return path.join(dir, 'python');
}

/** Seconds covered by the union of the intervals that overlap [from, to]. */
function covered(intervals: Interval[], from: number, to: number): number {
  const within = intervals
    .map(([a, b]): Interval => [Math.max(a, from), Math.min(b, to)])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of within) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

async function readIntervals(log: string): Promise<Interval[]> {
  const text = await fs.readFile(log, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ').map(Number) as Interval);
}

async function datasetInput(key: DatasetKey, inter: string): Promise<ContinuousTrainingDataset> {
  if (key === 'ml-100k') {
    const [source] = await stageSources('bench-pipeline-ml-100k', [inter]);
    return { name: 'bench-pipeline-ml-100k', sources: [source!], etl: { format: 'recbole', ratingRange: [1, 5] } };
  }
  const name = 'bench-pipeline-ml1m-synthetic';
  return {
    name,
    sources: [await syntheticSource(name, ML1M_LIKE)],
    etl: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  };
}

function pickFamilies(arg: string | undefined): Family[] {
  if (arg === 'all') return FAMILIES;
  const labels = (arg ?? 'two-tower').split(',');
  return labels.map((l) => {
    const f = FAMILIES.find((x) => x.label === l || x.label.split(' ')[0] === l);
    if (!f) throw new Error(`unknown family '${l}' (one of: ${FAMILIES.map((x) => x.label).join(', ')}, or all)`);
    return f;
  });
}

async function main(): Promise<void> {
  const inter = process.argv[2];
  const key = (process.argv[3] ?? 'ml-100k') as DatasetKey;
  if (!inter || !(key in DATASETS))
    throw new Error('usage: bench/pipeline.ts <ml-100k.inter> [ml-100k|ml-1m-synthetic] [families|all]');
  const families = pickFamilies(process.argv[4]);
  const log = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-pipeline-')), 'python-times');
  // Before anything reads the config: the worker's activities then run Python through the timing wrapper.
  process.env.RECSYS_PYTHON = await timedInterpreter(loadConfig().python, log);
  Runtime.install({ logger: new DefaultLogger('WARN') }); // figures, not worker chatter
  const dataset = await datasetInput(key, inter);
  const native = await NativeConnection.connect(nativeConnectionOptions());
  const connection = await Connection.connect(temporalConnectionOptions());
  const client = new Client({ connection, namespace: config().temporalNamespace });
  const taskQueue = benchName('bench-pipeline');
  const worker = await createTrainingWorker({ taskQueue, connection: native });

  console.log(`Pipeline benchmark (continuousTraining on ${DATASETS[key].label}) on ${machine()}`);
  console.log('  torchrun with 2 processes; gates as configured by default; no rollout');
  await worker.runUntil(async () => {
    for (const family of families) {
      const train = family.config[DATASETS[key].label];
      if (!train) {
        console.log(`\n  ${family.label}: no config for this dataset in bench/quality.ts`);
        continue;
      }
      const model = benchName(`bench-${String(train.model).replace(/_/g, '-')}`);
      const started = Date.now() / 1000;
      const t = performance.now();
      const result = await client.workflow.execute(continuousTraining, {
        taskQueue,
        workflowId: `train-${model}`,
        args: [{ model, dataset, train, nprocPerNode: 2, autoRollout: false }],
      });
      const total = (performance.now() - t) / 1000;
      const python = covered(await readIntervals(log), started, Date.now() / 1000);
      console.log(`\n  ${family.label} (${result.outcome}) ${JSON.stringify(train)}`);
      for (const [step, s] of Object.entries(result.stepSeconds)) console.log(`    ${step.padEnd(9)} ${duration(s)}`);
      console.log(`    total     ${duration(total)} (workflow start to result, including scheduling)`);
      console.log(
        `    Python processes ${duration(python)}; orchestration ${duration(total - python)} ` +
          `(${((100 * (total - python)) / total).toFixed(1)}% of the total)`,
      );
      const m = result.evaluation.model;
      const p = result.evaluation.popularity;
      console.log(
        `    NDCG@10 ${m['ndcg@10']?.toFixed(4)} vs recent popularity ${p['ndcg@10']?.toFixed(4)}; ` +
          `Recall@10 ${m['recall@10']?.toFixed(4)} vs ${p['recall@10']?.toFixed(4)}; ` +
          `${Math.round(result.training.samplesPerSec ?? 0).toLocaleString('en-US')} samples/s`,
      );
    }
  });
  await connection.close();
  await native.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
