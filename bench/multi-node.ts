/**
 * Multi-node training on the local-cluster target: two "nodes" (network namespaces, one torchrun process each, gloo
 * over the veths) against one node with two processes (torchrun --standalone, loopback) and one process, on the same
 * dataset version and config; and the wall time of each step of the provisionTraining saga (lease, tofu apply,
 * ansible converge, train, and the release: stop, tofu destroy, lease deletion). Runs its own worker in-process.
 *   npx tsx bench/multi-node.ts [runs=3]
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { buildDatasetVersion } from '../activities/etl';
import { config } from '../lib/config';
import { localDataset } from '../lib/dataset/cache';
import { nativeConnectionOptions, temporalConnectionOptions } from '../lib/temporal-connection';
import { ML1M_LIKE } from '../tests/data/synthetic';
import { createTrainingWorker } from '../worker/create-worker';
import { provisionTraining } from '../workflows/provision-training';
import { samplesPerSec } from './train-run';
import { benchName, machine, median, syntheticSource } from './common';

const CONFIG = { epochs: 1, max_steps_per_epoch: 300, batch_size: 512, log_every_seconds: 60 };

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const name = benchName('bench-multinode');
  const source = await syntheticSource(name, ML1M_LIKE);
  const dataset = await buildDatasetVersion({
    name,
    sources: [source],
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  });
  const dataDir = await localDataset(dataset.manifestUri);

  const native = await NativeConnection.connect(nativeConnectionOptions());
  const connection = await Connection.connect(temporalConnectionOptions());
  const client = new Client({ connection, namespace: config().temporalNamespace });
  const taskQueue = benchName('bench-multinode');
  const worker = await createTrainingWorker({ taskQueue, connection: native });

  const single: number[] = [];
  const standalone: number[] = [];
  const twoNodes: number[] = [];
  const steps = new Map<string, number[]>();
  const walls: number[] = [];
  await worker.runUntil(async () => {
    for (let i = 0; i < runs; i++) {
      single.push(await samplesPerSec(dataDir, 1, CONFIG));
      standalone.push(await samplesPerSec(dataDir, 2, CONFIG));
      const started = performance.now();
      const r = await client.workflow.execute(provisionTraining, {
        taskQueue,
        workflowId: benchName(`bench-provision-${i}`),
        args: [
          {
            train: { model: name, dataset, config: CONFIG, nprocPerNode: 1, rerun: `${name}-${i}` },
            cluster: { target: 'local-cluster', nodes: 2, maxLeaseHours: 1 },
          },
        ],
      });
      walls.push((performance.now() - started) / 1000);
      twoNodes.push(r.training.samplesPerSec);
      for (const s of r.cluster.steps) steps.set(s.step, [...(steps.get(s.step) ?? []), s.seconds]);
      // Inside the train step: torch's own training time; the rest is staging the data, startup and rendezvous.
      steps.set('  of which torch training', [
        ...(steps.get('  of which torch training') ?? []),
        r.training.trainSeconds,
      ]);
    }
  });
  await connection.close();
  await native.close();

  const [s, d, n] = [median(single), median(standalone), median(twoNodes)];
  console.log(`Multi-node training benchmark on ${machine()}`);
  console.log(
    `  two-tower, ML-1M-sized synthetic (${dataset.counts.train} train interactions, ${dataset.counts.items} items)`,
  );
  console.log(`  config ${JSON.stringify(CONFIG)}, OMP_NUM_THREADS=1, ${runs} runs each`);
  console.log(`  1 process:                       median ${fmt(s)} samples/s  (${single.map(fmt).join(', ')})`);
  console.log(`  1 node x 2 procs (loopback):     median ${fmt(d)} samples/s  (${standalone.map(fmt).join(', ')})`);
  console.log(`  2 nodes x 1 proc (netns, veth):  median ${fmt(n)} samples/s  (${twoNodes.map(fmt).join(', ')})`);
  console.log(`  ratios: 2 nodes / 1 process ${(n / s).toFixed(2)}, 2 nodes / 1 node x 2 ${(n / d).toFixed(2)}`);
  console.log('  provisionTraining saga on local-cluster (2 nodes), median seconds per step:');
  for (const [step, secs] of steps)
    console.log(`    ${step.padEnd(26)} ${median(secs).toFixed(1)}  (${secs.map((x) => x.toFixed(1)).join(', ')})`);
  console.log(`    ${'workflow wall time'.padEnd(26)} ${median(walls).toFixed(1)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
