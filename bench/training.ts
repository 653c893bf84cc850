/**
 * Training throughput: one process (1 thread) against torchrun with two processes (gloo, 1 thread each) on the same
 * dataset version and config. On two CPU cores DDP proves correctness; speed comes from GPUs in production.
 *   npx tsx bench/training.ts [runs=3]
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localDataset } from '../lib/dataset/cache';
import { buildDatasetVersion } from '../activities/etl';
import { runPython } from '../activities/python-process';
import { ML1M_LIKE } from '../tests/data/synthetic';
import { benchName, machine, median, syntheticSource } from './common';

const CONFIG = { epochs: 1, max_steps_per_epoch: 300, batch_size: 512, log_every_seconds: 60 };

async function samplesPerSec(dataDir: string, nproc: number): Promise<number> {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-train-'));
  try {
    const result = await runPython({
      module: 'models.train',
      args: ['--data-dir', dataDir, '--out-dir', out, '--config-json', JSON.stringify(CONFIG)],
      nprocPerNode: nproc > 1 ? nproc : undefined,
    });
    return result.samples_per_sec as number;
  } finally {
    await fs.rm(out, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const name = benchName('bench-train');
  const source = await syntheticSource(name, ML1M_LIKE);
  const ref = await buildDatasetVersion({
    name,
    sources: [source],
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  });
  const dataDir = await localDataset(ref.manifestUri);
  const single: number[] = [];
  const ddp: number[] = [];
  for (let i = 0; i < runs; i++) {
    single.push(await samplesPerSec(dataDir, 1));
    ddp.push(await samplesPerSec(dataDir, 2));
  }
  const [s, d] = [median(single), median(ddp)];
  console.log(`Training benchmark on ${machine()}`);
  console.log(`  two-tower, ML-1M-sized synthetic (${ref.counts.train} train interactions, ${ref.counts.items} items)`);
  console.log(`  config ${JSON.stringify(CONFIG)}, OMP_NUM_THREADS=1, ${runs} runs each`);
  console.log(
    `  1 process:              median ${Math.round(s).toLocaleString('en-US')} samples/s  (${single.map(Math.round).join(', ')})`,
  );
  console.log(
    `  torchrun 2 procs gloo:  median ${Math.round(d).toLocaleString('en-US')} samples/s  (${ddp.map(Math.round).join(', ')})`,
  );
  console.log(`  ratio torchrun/single:  ${(d / s).toFixed(2)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
