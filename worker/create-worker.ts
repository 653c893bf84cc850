/** Builds a worker for the training task queue: the continuous-training workflows and every activity. */
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { config } from '../lib/config';

export interface WorkerOptions {
  taskQueue?: string;
  /** Reuse a connection (tests); otherwise one is opened to the configured Temporal address. */
  connection?: NativeConnection;
  /** The activities to register (default: createActivities() with the process-wide dependencies). */
  activities?: object;
}

export async function createTrainingWorker(options: WorkerOptions = {}): Promise<Worker> {
  const cfg = config();
  const connection = options.connection ?? (await NativeConnection.connect({ address: cfg.temporalAddress }));
  return Worker.create({
    connection,
    namespace: cfg.temporalNamespace,
    taskQueue: options.taskQueue ?? cfg.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: options.activities ?? createActivities(),
    // Training and evaluation are CPU-bound child processes: run few at a time on a small machine.
    maxConcurrentActivityTaskExecutions: 2,
    // Send heartbeats (epoch, loss, checkpoint) to the server every few seconds so the Web UI shows live progress;
    // the default throttle would show them only every 24 s with a 30 s heartbeat timeout.
    maxHeartbeatThrottleInterval: '3 seconds',
  });
}
