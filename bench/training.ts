/**
 * Training throughput: one process (1 thread) against torchrun with two processes (gloo, 1 thread each) on the same
 * dataset version and config. On two CPU cores DDP proves correctness; speed comes from GPUs in production.
 *   npx tsx bench/training.ts [runs=3]
 */
import { localDataset } from '../lib/dataset/cache';
import { buildDatasetVersion } from '../activities/etl';
import { ML1M_LIKE } from '../tests/data/synthetic';
import { samplesPerSec } from './train-run';
import { benchName, machine, median, syntheticSource } from './common';

const CONFIG = { epochs: 1, max_steps_per_epoch: 300, batch_size: 512, log_every_seconds: 60 };

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
    single.push(await samplesPerSec(dataDir, 1, CONFIG));
    ddp.push(await samplesPerSec(dataDir, 2, CONFIG));
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
