/**
 * Builds the platform's worker: one Temporal worker on the main task queue (every workflow, and the long CPU-bound
 * activities, two at a time) and one on its control queue (rollout control: deploys, analysis, registry moves, the
 * load test, with slots of their own). Both register every activity; which queue an activity runs on is the
 * workflow's choice (workflows/activity-options.ts), so a training holding every main slot cannot delay a rollback.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { config } from '../lib/config';
import { nativeConnectionOptions } from '../lib/temporal-connection';
import { controlTaskQueue } from '../lib/task-queues';

export interface WorkerOptions {
  taskQueue?: string;
  /** Reuse a connection (tests); otherwise one is opened to the configured Temporal cluster (TLS, API key too). */
  connection?: NativeConnection;
  /** The activities to register (default: createActivities() with the process-wide dependencies). */
  activities?: object;
}

/** The two workers run and stop together; the API is the part of Worker's that callers use. */
export interface RecsysWorker {
  readonly taskQueue: string;
  readonly controlTaskQueue: string;
  run(): Promise<void>;
  runUntil<T>(fnOrPromise: Promise<T> | (() => Promise<T>)): Promise<T>;
  shutdown(): void;
}

export async function createTrainingWorker(options: WorkerOptions = {}): Promise<RecsysWorker> {
  const cfg = config();
  const connection = options.connection ?? (await NativeConnection.connect(nativeConnectionOptions(cfg.temporal)));
  const taskQueue = options.taskQueue ?? cfg.taskQueue;
  const activities = options.activities ?? createActivities();
  const common = {
    connection,
    namespace: cfg.temporalNamespace,
    activities,
    // Send heartbeats (epoch, loss, checkpoint) to the server every few seconds so the Web UI shows live progress;
    // the default throttle would show them only every 24 s with a 30 s heartbeat timeout.
    maxHeartbeatThrottleInterval: '3 seconds',
  } as const;
  const main = await Worker.create({
    ...common,
    taskQueue,
    workflowsPath: require.resolve('../workflows'),
    // Training and evaluation are CPU-bound child processes: run few at a time on a small machine.
    maxConcurrentActivityTaskExecutions: 2,
  });
  const control = await Worker.create({
    ...common,
    taskQueue: controlTaskQueue(taskQueue),
    // Admin calls, scrapes and registry moves mostly wait on the network; the load test is bounded in rate and time.
    maxConcurrentActivityTaskExecutions: 8,
  });
  return {
    taskQueue,
    controlTaskQueue: controlTaskQueue(taskQueue),
    run: async () => {
      const runs = [main.run(), control.run()];
      // One stopping (shutdown, a fatal error) stops the other: they are one worker to their caller.
      await Promise.race(runs).finally(() => {
        for (const w of [main, control]) if (w.getState() === 'RUNNING') w.shutdown();
      });
      await Promise.all(runs);
    },
    runUntil: async <T>(fnOrPromise: Promise<T> | (() => Promise<T>)): Promise<T> => {
      const controlRun = control.run();
      try {
        return await main.runUntil(fnOrPromise);
      } finally {
        if (control.getState() === 'RUNNING') control.shutdown();
        await controlRun;
      }
    },
    shutdown: () => {
      for (const w of [main, control]) if (w.getState() === 'RUNNING') w.shutdown();
    },
  };
}
