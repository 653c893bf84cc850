/**
 * Harness of the workflow tests: the real workflow code on Temporal's Java time-skipping test server (launched by
 * infra/temporal-test-server.sh, installed by infra/install.sh), with mocked activities that record their calls.
 * Needs no running stack. Timers are skipped, not waited for: `handle.result()` and `env.sleep()` let the test server
 * jump to the next timer; otherwise its clock runs in real time.
 *
 * The test server holds a time-skipping lock from an activity's scheduling until it completes, fails or reports its
 * cancellation. An activity that reports after its workflow closed never releases it (the report is refused), and
 * from then on the server's clock only runs in real time. So a mock activity left running by a workflow (cancelled
 * with TRY_CANCEL) must report back before that workflow completes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
// Exported by the SDK for tests that register search attributes.
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import * as searchAttributes from '../../lib/search-attributes';
import { controlTaskQueue } from '../../lib/task-queues';

export const TEST_SERVER_LAUNCHER = path.resolve(__dirname, '../../infra/temporal-test-server.sh');

/**
 * The activities the workflows call, by the names the workers register them under (a contract of the workflows). The
 * mocks are typed loosely, by name only, so that moving the activities' types around does not touch these tests; an
 * activity renamed on one side only fails the test that needs it ("not registered").
 */
export const ACTIVITY_NAMES = [
  'etl',
  'validateDataset',
  'train',
  'evaluate',
  'exportOnnx',
  'quantize',
  'checkGates',
  'register',
  'currentChampion',
  'describeVersion',
  'tagVersion',
  'promote',
  'restoreChampion',
  'ensureEnvironment',
  'stopEnvironment',
  'scrapeVersionMetrics',
  'runLoadTest',
  'analyseCanaryWindow',
  'environmentPort',
  'leaseHolder',
  'recordRecipe',
  'planRetrain',
  'driftContext',
  'summarizeDriftWindow',
  'evaluateDriftWindow',
  'createLease',
  'awaitLease',
  'applyNodes',
  'configureNodes',
  'stopTraining',
  'destroyNodes',
  'deleteLease',
  'sweepClusters',
] as const;
export type ActivityName = (typeof ACTIVITY_NAMES)[number];
export type ActivityInput = Record<string, unknown>;
/** Returns (or resolves to) the activity's result; throws (or rejects) as the activity fails. */
export type MockActivity = (input: ActivityInput) => unknown;
export type MockActivities = Partial<Record<ActivityName, MockActivity>>;
export interface ActivityCall {
  name: ActivityName;
  input: ActivityInput;
}

/** A failure the activity's retry policy does not retry (as a real activity reports a broken dependency). */
export const fatal = (message: string, type = 'MockFailure') => ApplicationFailure.nonRetryable(message, type);

export const uniqueId = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

/**
 * One time-skipping test server and one workflow bundle per test file, a worker per test (own task queue).
 * Call at the top of a test file; it registers beforeAll, afterEach (the clock check) and afterAll.
 */
export function useWorkflowTestEnv(): {
  env: () => TestWorkflowEnvironment;
  /** Starts a worker with these mocks on a fresh task queue; it stops in afterAll. */
  worker: (mocks: MockActivities) => Promise<{ taskQueue: string; calls: ActivityCall[] }>;
} {
  let env: TestWorkflowEnvironment | undefined;
  let bundle: WorkflowBundle | undefined;
  const running: { worker: Worker; done: Promise<void> }[] = [];

  beforeAll(async () => {
    try {
      execFileSync(TEST_SERVER_LAUNCHER, ['--check'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new Error(`the workflow tests need Temporal's Java test server: ${stderr || String(err)}`);
    }
    quietRuntime();
    [env, bundle] = await Promise.all([
      TestWorkflowEnvironment.createTimeSkipping({
        server: { executable: { type: 'existing-path', path: TEST_SERVER_LAUNCHER } },
      }),
      bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: new DefaultLogger('WARN') }),
    ]);
    await registerSearchAttributes(env);
  });

  // Catches the lock leak described above in the test that caused it, not as timeouts in the tests after it.
  afterEach(async () => {
    if (!env) return;
    // Three seconds of server time: skipped, they take a fraction of that; not skipped, all three. A loaded machine
    // can make one skip slow, never three in a row.
    let slow = 0;
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      await env.sleep(3_000);
      if (Date.now() - started < 2_500) break;
      slow += 1;
    }
    if (slow === 3)
      throw new Error(
        "the test server's clock no longer skips time: an activity of this test reported after its workflow closed",
      );
  });

  afterAll(async () => {
    for (const { worker } of running) if (worker.getState() === 'RUNNING') worker.shutdown();
    await Promise.all(running.map((r) => r.done));
    await env?.teardown();
  });

  return {
    env: () => {
      if (!env) throw new Error('the test environment is not up (beforeAll failed?)');
      return env;
    },
    worker: async (mocks) => {
      if (!env || !bundle) throw new Error('the test environment is not up (beforeAll failed?)');
      const taskQueue = uniqueId('wf-test');
      const calls: ActivityCall[] = [];
      // Each test's environments are its own (a port of its own names their leases), free unless a test says not.
      const port = 40_000 + Math.floor(Math.random() * 20_000);
      const defaults: MockActivities = {
        environmentPort: (input) => ({ env: input.env, port }),
        leaseHolder: () => undefined,
        recordRecipe: (input) => `s3://test/recipes/${String(input.workflowId)}.json`,
      };
      const recorded = Object.fromEntries(
        Object.entries({ ...defaults, ...mocks }).map(([name, mock]) => [
          name,
          async (input: ActivityInput) => {
            calls.push({ name: name as ActivityName, input });
            return await mock(input);
          },
        ]),
      );
      const worker = await Worker.create({
        connection: env.nativeConnection,
        namespace: env.namespace ?? 'default',
        taskQueue,
        workflowBundle: bundle,
        activities: recorded,
        // Deliver cancellations to blocked mock activities promptly (they heartbeat).
        maxHeartbeatThrottleInterval: '50 milliseconds',
        defaultHeartbeatThrottleInterval: '50 milliseconds',
      });
      // Rollout control runs on the control queue of the workflow's queue, as the platform's worker serves it.
      const control = await Worker.create({
        connection: env.nativeConnection,
        namespace: env.namespace ?? 'default',
        taskQueue: controlTaskQueue(taskQueue),
        activities: recorded,
        maxHeartbeatThrottleInterval: '50 milliseconds',
        defaultHeartbeatThrottleInterval: '50 milliseconds',
      });
      running.push({ worker, done: worker.run() }, { worker: control, done: control.run() });
      return { taskQueue, calls };
    },
  };
}

/**
 * Worker and workflow logs (worker state changes, the workflows' log.info) and the core's warnings about the test
 * server's missing capabilities are not for the test output; failures show in the tests themselves.
 */
function quietRuntime(): void {
  try {
    Runtime.install({
      logger: new DefaultLogger('ERROR'),
      telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
    });
  } catch {
    // Already installed in this module registry: keep it.
  }
}

/** The workflows upsert the stack's custom search attributes (infra/stack.sh registers them there). */
async function registerSearchAttributes(env: TestWorkflowEnvironment): Promise<void> {
  const types: Record<string, number> = {};
  for (const key of Object.values(searchAttributes)) {
    const type = encodeSearchAttributeIndexedValueType(key.type);
    if (type !== undefined) types[key.name] = type;
  }
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: types,
  });
}

/**
 * Polls the `query` until `done` holds (real-time polls; with `skipMs`, the test server's clock jumps that much
 * between polls so bakes and retries pass at once). Fails with the last answer after `timeoutMs` of real time.
 */
export async function waitForQuery<T>(
  handle: WorkflowHandle,
  query: () => Promise<T>,
  done: (t: T) => boolean,
  opts: { what: string; env?: TestWorkflowEnvironment; skipMs?: number; timeoutMs?: number },
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await query();
      if (done(last)) return last;
    } catch (err) {
      lastError = err; // no workflow task has completed yet: nothing to query
    }
    if (Date.now() > deadline)
      throw new Error(
        `workflow ${handle.workflowId}: timed out waiting for ${opts.what}; last answer: ` +
          (last === undefined ? String(lastError) : JSON.stringify(last)),
      );
    if (opts.env && opts.skipMs) await opts.env.sleep(opts.skipMs);
    else await delay(20);
  }
}

/**
 * A mock activity that blocks (heartbeating) until `release()` or until the workflow cancels it; `started` resolves
 * when it runs, `cancelled` tells whether the cancellation reached it.
 */
export function blockingActivity(result: unknown): {
  mock: MockActivity;
  started: Promise<void>;
  release: () => void;
  cancelled: () => boolean;
} {
  let release!: () => void;
  let markStarted!: () => void;
  let wasCancelled = false;
  const released = new Promise<void>((resolve) => (release = resolve));
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const mock: MockActivity = async () => {
    const ctx = Context.current();
    markStarted();
    const beat = setInterval(() => ctx.heartbeat(), 20);
    try {
      await Promise.race([released, ctx.cancelled]);
    } catch (err) {
      wasCancelled = true;
      throw err;
    } finally {
      clearInterval(beat);
    }
    return result;
  };
  return { mock, started, release, cancelled: () => wasCancelled };
}
