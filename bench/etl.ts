/**
 * ETL throughput on 1M interactions (ML-1M-sized synthetic log): download, parse, validate, dedupe, split, hash,
 * write Parquet and upload. Each run uses a fresh dataset name so nothing is reused.
 *   npx tsx bench/etl.ts [runs=3]
 */
import { buildDatasetVersion } from '../activities/etl';
import { ML1M_LIKE } from '../tests/data/synthetic';
import { benchName, machine, median, syntheticSource } from './common';

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const source = await syntheticSource(benchName('bench-etl-raw'), ML1M_LIKE);
  const seconds: number[] = [];
  let rows = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const ref = await buildDatasetVersion({
      name: benchName(`bench-etl-${i}`),
      sources: [source],
      config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
    });
    seconds.push((performance.now() - t) / 1000);
    rows = ref.counts.raw;
  }
  const med = median(seconds);
  console.log(`ETL benchmark on ${machine()}`);
  console.log(`  rows: ${rows}, runs: ${runs}, seconds: ${seconds.map((s) => s.toFixed(2)).join(' ')}`);
  console.log(`  median ${med.toFixed(2)} s = ${Math.round(rows / med).toLocaleString('en-US')} rows/s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
