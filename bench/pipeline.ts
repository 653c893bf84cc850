/**
 * The continuousTraining pipeline's wall time split by step, on real MovieLens-100K, with a fresh model name so no
 * step is reused. Runs its own worker in-process on a private task queue.
 *   npx tsx bench/pipeline.ts <path to ml-100k.inter>
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { stageSources } from '../cli/commands/train';
import { duration } from '../cli/format';
import { config } from '../lib/config';
import { nativeConnectionOptions, temporalConnectionOptions } from '../lib/temporal-connection';
import { createTrainingWorker } from '../worker/create-worker';
import { continuousTraining } from '../workflows/continuous-training';
import { benchName, machine } from './common';

async function main(): Promise<void> {
  const inter = process.argv[2];
  if (!inter) throw new Error('usage: bench/pipeline.ts <ml-100k.inter>');
  const model = benchName('bench-two-tower');
  Runtime.install({ logger: new DefaultLogger('WARN') }); // figures, not worker chatter
  const [source] = await stageSources('ml-100k', [inter]);
  const native = await NativeConnection.connect(nativeConnectionOptions());
  const connection = await Connection.connect(temporalConnectionOptions());
  const client = new Client({ connection, namespace: config().temporalNamespace });
  const taskQueue = benchName('bench-pipeline');
  const worker = await createTrainingWorker({ taskQueue, connection: native });
  const t = performance.now();
  const handle = await client.workflow.start(continuousTraining, {
    taskQueue,
    workflowId: `train-${model}-ml-100k`,
    args: [
      {
        model,
        dataset: {
          name: benchName('bench-ml-100k'),
          sources: [source!],
          etl: { format: 'recbole', ratingRange: [1, 5] },
        },
        nprocPerNode: 2,
      },
    ],
  });
  const result = await worker.runUntil(handle.result());
  const total = (performance.now() - t) / 1000;
  console.log(`Pipeline benchmark (continuousTraining on MovieLens-100K) on ${machine()}`);
  for (const [step, s] of Object.entries(result.stepSeconds)) console.log(`  ${step.padEnd(9)} ${duration(s)}`);
  console.log(`  total     ${duration(total)} (workflow start to result, including scheduling)`);
  console.log(
    `  NDCG@10 ${result.evaluation.model['ndcg@10']?.toFixed(4)} vs popularity ${result.evaluation.popularity['ndcg@10']?.toFixed(4)}; ` +
      `Recall@10 ${result.evaluation.model['recall@10']?.toFixed(4)} vs ${result.evaluation.popularity['recall@10']?.toFixed(4)}`,
  );
  await connection.close();
  await native.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
