/**
 * The driftMonitor workflow's logic with mocked activities on the time-skipping test server: baseline windows first,
 * insufficient data never judged, confirmed drift starting one retrain (`retrain-<model>`, trigger drift, the report
 * as its cause) that absorbs the alarms after it, suppression during a rollout, re-baselining when champion moves,
 * pause and resume, config updates checked, a failed summary retried without counting a window twice, and
 * continue-as-new keeping the state.
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { WindowVerdict } from '../../lib/drift/evaluate';
import {
  configureUpdate,
  driftMonitor,
  driftStatusQuery,
  pauseSignal,
  resumeSignal,
  type DriftMonitorView,
} from '../../workflows';
import { fatal, uniqueId, useWorkflowTestEnv, type ActivityInput, type MockActivities } from './harness';

const t = useWorkflowTestEnv();

const DATASET = (v: string) => `s3://recsys/datasets/ml-test/${v}/`;
/** Small windows: the monitor's timers are skipped, and real time stays short while a mock blocks. */
const CONFIG = { intervalSeconds: 2, graceSeconds: 0, baselineWindows: 2, minRequests: 100, cooldownSeconds: 0 };

type Status = WindowVerdict['status'];

function verdict(input: ActivityInput, status: Status): { verdict: WindowVerdict; reportUri: string } {
  const uri = String(input.summaryUri);
  const start = Number(uri.split('/').at(-1));
  return {
    verdict: {
      windowStartMs: start,
      windowEndMs: start + 2000,
      status,
      requests: 500,
      feedback: 200,
      signals: [],
      breached: status === 'ok' ? [] : ['requested-popularity'],
      alerts: [],
      confirmed: status === 'drift' ? ['requested-popularity'] : [],
      reason: status,
    },
    reportUri: `${uri}.report.json`,
  };
}

/** Mocks: a champion on one dataset, windows with `requests` each, verdicts from `judge` (by evaluation index). */
function monitorActivities(o: {
  judge?: (n: number) => Status;
  requests?: number;
  champion?: () => string;
  rollout?: (contextCalls: number) => string | undefined;
  extra?: MockActivities;
}): MockActivities {
  let evaluated = 0;
  let contexts = 0;
  return {
    driftContext: () => {
      const version = o.champion?.() ?? '1';
      const rollout = o.rollout?.(contexts++);
      return {
        champion: { version, datasetUri: DATASET(`d${version}`), datasetVersion: `d${version}` },
        ...(rollout ? { rolloutRunning: rollout } : {}),
      };
    },
    summarizeDriftWindow: (i) => {
      const w = i.window as { startMs: number };
      return {
        uri: `s3://recsys/drift/${String(i.datasetUri).split('/')[4]}/${w.startMs}`,
        requests: o.requests ?? 500,
        feedback: 200,
        versions: {},
        chunks: 3,
        reused: false,
      };
    },
    evaluateDriftWindow: (i) => verdict(i, o.judge?.(evaluated++) ?? 'ok'),
    ...o.extra,
  };
}

async function start(mocks: MockActivities, extra: { continueAsNewEvery?: number; config?: object } = {}) {
  const { taskQueue, calls } = await t.worker(mocks);
  const model = uniqueId('m');
  const handle = await t.env().client.workflow.start(driftMonitor, {
    taskQueue,
    workflowId: `drift-monitor-${model}-production`,
    args: [
      {
        model,
        env: 'production',
        config: { ...CONFIG, ...extra.config },
        continueAsNewEvery: extra.continueAsNewEvery,
      },
    ],
  });
  return { handle, calls, model };
}

/**
 * Ends a monitor from a timer, never mid-activity: the test server leaks its time-skipping lock when an activity
 * reports after its workflow closed. Paused, the monitor waits on a condition with nothing in flight.
 */
async function stop(handle: { workflowId: string }): Promise<void> {
  const h = t.env().client.workflow.getHandle(handle.workflowId);
  await h.signal(pauseSignal, { reason: 'test done' });
  for (let i = 0; i < 100; i++) {
    if ((await h.describe()).searchAttributes.RecsysDrift?.[0] === 'paused') break;
    await t.env().sleep(500);
  }
  await h.terminate('test done');
}

/** Advances server time until the monitor has judged `n` windows; returns its view. */
async function untilWindows(handle: { query: (q: typeof driftStatusQuery) => Promise<DriftMonitorView> }, n: number) {
  for (let i = 0; i < 200; i++) {
    const v = await handle.query(driftStatusQuery);
    if (v.state.counts.windows >= n) return v;
    await t.env().sleep(1000);
  }
  throw new Error(`the monitor did not judge ${n} windows`);
}

describe('driftMonitor workflow (mocked activities, time skipping)', () => {
  test('baseline windows first, then verdicts; windows are consecutive and never judged twice', async () => {
    const { handle, calls } = await start(monitorActivities({}));
    const v = await untilWindows(handle, 5);
    const w = v.state.windows;
    expect(w.slice(0, 2).map((x) => x.reason)).toEqual([
      'baseline window 1/2 of champion v1',
      'baseline window 2/2 of champion v1',
    ]);
    expect(w.slice(0, 2).every((x) => x.status === 'insufficient-data')).toBe(true);
    expect(w[2]!.status).toBe('ok');
    for (let i = 1; i < w.length; i++) expect(w[i]!.windowStartMs).toBe(w[i - 1]!.windowEndMs);
    const evaluated = calls.filter((c) => c.name === 'evaluateDriftWindow');
    expect(evaluated.length).toBe(w.length - 2);
    expect(evaluated[0]!.input.baselineUris).toEqual(w.slice(0, 2).map((x) => x.summaryUri));
    await stop(handle);
  });

  test('windows below minRequests are insufficient-data: never a baseline, never judged', async () => {
    const { handle, calls } = await start(monitorActivities({ requests: 40 }));
    const v = await untilWindows(handle, 4);
    expect(v.status).toBe('insufficient-data');
    expect(
      v.state.windows.every((x) => x.status === 'insufficient-data' && /40 requests < minRequests 100/.test(x.reason)),
    ).toBe(true);
    expect(v.state.baseline?.windowUris).toEqual([]);
    expect(calls.some((c) => c.name === 'evaluateDriftWindow')).toBe(false);
    const desc = await handle.describe();
    expect(desc.searchAttributes.RecsysDrift).toEqual(['insufficient-data']);
    await stop(handle);
  });

  test('drift while a rollout of the model runs is suppressed, not retrained', async () => {
    // A rollout runs from the start (the baseline waits for it), stops, and runs again once the baseline is made.
    const { handle, calls } = await start(
      monitorActivities({
        judge: () => 'drift',
        rollout: (n) => (n < 2 || n >= 4 ? 'rollout-x-v2' : undefined),
      }),
      { config: { baselineWindows: 2 } },
    );
    const v = await untilWindows(handle, 7);
    const w = v.state.windows;
    expect(w.slice(0, 2).every((x) => x.reason === 'baseline waits: rollout rollout-x-v2 running')).toBe(true);
    expect(v.state.baseline?.windowUris.length).toBe(2);
    const judged = w.filter((x) => x.status === 'drift');
    expect(judged.length).toBeGreaterThan(0);
    expect(judged.every((x) => x.action === 'suppressed: rollout rollout-x-v2 running')).toBe(true);
    expect(calls.some((c) => c.name === 'planRetrain')).toBe(false);
    await stop(handle);
  });

  test('confirmed drift starts a retrain (trigger drift, the report as its cause); the cooldown holds the next', async () => {
    // A retrain running when another alarm comes absorbs it: that needs Temporal to refuse a child start, which the
    // time-skipping test server mishandles (it leaks its lock), so tests/integration/drift-loop.test.ts proves it.
    const { handle, calls, model } = await start(
      monitorActivities({
        judge: (n) => (n < 1 ? 'ok' : 'drift'),
        extra: { planRetrain: () => Promise.reject(fatal('planning fails: the retrain ends at once', 'NoChampion')) },
      }),
      { config: { cooldownSeconds: 3600 } },
    );
    const v = await untilWindows(handle, 6);
    const drift = v.state.windows.filter((w) => w.status === 'drift');
    expect(drift.length).toBeGreaterThanOrEqual(2);
    expect(drift[0]!.action).toBe(`retrain started: retrain-${model}`);
    expect(drift.slice(1).every((w) => (w.action ?? '').startsWith('suppressed: cooldown until'))).toBe(true);
    expect(v.state.counts.retrainsStarted).toBe(1);
    expect(v.state.lastRetrain).toMatchObject({ workflowId: `retrain-${model}`, reportUri: drift[0]!.reportUri });
    const retrain = await t.env().client.workflow.getHandle(`retrain-${model}`).describe();
    expect(retrain.type).toBe('continuousTraining');
    expect(retrain.searchAttributes.RecsysTrigger).toEqual(['drift']);
    expect(calls.filter((c) => c.name === 'planRetrain')[0]?.input.model).toBe(model);
    await stop(handle);
  });

  test('a champion that moves re-baselines the monitor on its dataset', async () => {
    let champion = '1';
    const { handle, calls } = await start(monitorActivities({ champion: () => champion }));
    await untilWindows(handle, 3);
    champion = '2';
    const v = await untilWindows(handle, 6);
    expect(v.state.baseline).toMatchObject({ championVersion: '2', datasetVersion: 'd2' });
    expect(v.state.baseline?.reason).toBe('champion moved v1 → v2');
    // The new baseline is made of windows that start after the move was seen, never of one holding older traffic.
    const sinceMs = v.state.baseline!.sinceMs;
    expect(v.state.windows.some((w) => /^baseline waits for the first window after/.test(w.reason))).toBe(true);
    for (const uri of v.state.baseline!.windowUris)
      expect(Number(uri.split('/').at(-1))).toBeGreaterThanOrEqual(sinceMs);
    const summarised = calls.filter((c) => c.name === 'summarizeDriftWindow').map((c) => c.input.datasetUri);
    expect(summarised.at(-1)).toBe(DATASET('d2'));
    await stop(handle);
  });

  test('pause stops judging (RecsysDrift paused); resume starts again at the next whole window', async () => {
    const { handle, calls } = await start(monitorActivities({}));
    await untilWindows(handle, 2);
    await handle.signal(pauseSignal, { reason: 'maintenance' });
    const before = calls.filter((c) => c.name === 'summarizeDriftWindow').length;
    await t.env().sleep(20_000);
    const paused = await handle.query(driftStatusQuery);
    expect(paused.status).toBe('paused');
    expect(paused.state.pauseReason).toBe('maintenance');
    // At most the window in flight when the signal came.
    expect(calls.filter((c) => c.name === 'summarizeDriftWindow').length).toBeLessThanOrEqual(before + 1);
    expect((await handle.describe()).searchAttributes.RecsysDrift).toEqual(['paused']);
    await handle.signal(resumeSignal);
    const n = paused.state.counts.windows;
    const v = await untilWindows(handle, n + 2);
    expect(v.state.paused).toBe(false);
    await stop(handle);
  });

  test('configure: a bad value is rejected naming the field; a good one applies', async () => {
    const { handle } = await start(monitorActivities({}));
    await expect(handle.executeUpdate(configureUpdate, { args: [{ persistence: { k: 5, m: 3 } }] })).rejects.toThrow(
      WorkflowUpdateFailedError,
    );
    const next = await handle.executeUpdate(configureUpdate, { args: [{ minRequests: 250 }] });
    expect(next.minRequests).toBe(250);
    expect(next.intervalSeconds).toBe(2);
    expect((await handle.query(driftStatusQuery)).state.config.minRequests).toBe(250);
    await stop(handle);
  });

  test('a summary that fails once is retried: the window is counted once', async () => {
    let failed = false;
    const base = monitorActivities({});
    const { handle, calls } = await start({
      ...base,
      summarizeDriftWindow: (i) => {
        if (!failed) {
          failed = true;
          throw new Error('object store unavailable');
        }
        return (base.summarizeDriftWindow as (x: ActivityInput) => unknown)(i);
      },
    });
    const v = await untilWindows(handle, 4);
    const starts = v.state.windows.map((w) => w.windowStartMs);
    expect(new Set(starts).size).toBe(starts.length);
    expect(calls.filter((c) => c.name === 'summarizeDriftWindow').length).toBe(v.state.counts.windows + 1);
    await stop(handle);
  });

  test('continue-as-new carries the state: baseline, windows and counts', async () => {
    const { handle } = await start(monitorActivities({}), { continueAsNewEvery: 3 });
    const first = (await handle.describe()).runId;
    const v = await untilWindows(handle, 7);
    const now = await t.env().client.workflow.getHandle(handle.workflowId).describe();
    expect(now.runId).not.toBe(first);
    expect(v.state.baseline?.windowUris.length).toBe(2);
    const starts = v.state.windows.map((w) => w.windowStartMs);
    for (let i = 1; i < starts.length; i++) expect(starts[i]).toBe(starts[i - 1]! + 2000);
    expect(v.state.counts.windows).toBe(v.state.windows.length);
    await stop(handle);
  });
});
