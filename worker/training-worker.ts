/**
 * Worker entry point for the training task queue (ETL, training, evaluation, export, registration).
 *   npx tsx worker/training-worker.ts            # RECSYS_TASK_QUEUE selects the queue (default recsys-training)
 */
import { createTrainingWorker } from './create-worker';

async function main(): Promise<void> {
  const worker = await createTrainingWorker();
  console.log(
    `[worker] polling task queues '${worker.taskQueue}' and '${worker.controlTaskQueue}' (pid ${process.pid})`,
  );
  await worker.run();
}

main().catch((err: unknown) => {
  console.error('[worker] fatal:', err);
  process.exit(1);
});
