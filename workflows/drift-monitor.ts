/**
 * driftMonitor: watches one model's served traffic in one environment, a window at a time (default one hour), and
 * retrains the model when drift is confirmed. Per window, after a grace period for late log chunks:
 *   context (champion, running rollout) → summarise the window's logs into bucket counts (s3://.../drift/...) →
 *   evaluate against the baseline (the champion's first full windows) → act.
 * Acting: confirmed drift starts `continuousTraining` with trigger `drift` under `retrain-<model>` (abandoned child;
 * a retrain already running absorbs it), unless a rollout of the model is running, the cooldown since the last
 * retrain has not passed, or retraining is off. A champion that moves re-baselines the monitor.
 *
 * Windows are aligned to the interval, so a window's summary key is fixed: a retried activity or a worker restart
 * mid-window finds the summary and never counts a window twice. Steerable by signals (pause, resume, rebaseline) and
 * an update (configure); watched through the `driftStatus` query, the RecsysDrift search attribute and the workflow's
 * current details. Continues as new when the server suggests it (or every `continueAsNewEvery` windows).
 */
import {
  condition,
  continueAsNew,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { parseDriftConfig, type DriftConfig, type DriftConfigInput } from '../lib/drift/config';
import type { WindowVerdict } from '../lib/drift/evaluate';
import { checkModelName } from '../lib/model-name';
import { RecsysDrift, RecsysModel } from '../lib/search-attributes';
import { driftWindowOptions, registryOptions } from './activity-options';
import {
  configureUpdate,
  driftStatusQuery,
  KEPT_WINDOWS,
  pauseSignal,
  rebaselineSignal,
  resumeSignal,
  type DriftMonitorInput,
  type DriftMonitorState,
  type MonitorStatus,
  type WindowRecord,
} from './drift-api';
import { requestRetrain } from './retrain';

const { summarizeDriftWindow, evaluateDriftWindow } = proxyActivities<Activities>(driftWindowOptions);
const { driftContext } = proxyActivities<Activities>(registryOptions);

/** Windows judged per run before continuing as new, unless the server suggests it sooner. */
const DEFAULT_CONTINUE_AS_NEW_EVERY = 500;
/** After a long outage, windows older than this many intervals are skipped rather than judged one by one. */
const MAX_CATCH_UP_WINDOWS = 24;

export async function driftMonitor(input: DriftMonitorInput & { continueAsNewEvery?: number }): Promise<never> {
  const model = checkModelName(input.model);
  const env = input.env ?? 'production';
  const state: DriftMonitorState = input.state ?? initialState(input);

  const me = workflowInfo().workflowId;
  const status = (): MonitorStatus => (state.paused ? 'paused' : (state.windows.at(-1)?.status ?? 'starting'));

  setHandler(driftStatusQuery, () => ({
    model,
    env,
    status: status(),
    nextWindowAt: new Date(state.nextWindowStartMs + state.config.intervalSeconds * 1000).toISOString(),
    state,
  }));
  setHandler(pauseSignal, (arg) => {
    state.paused = true;
    state.pauseReason = arg?.reason ?? 'paused';
    show();
  });
  setHandler(resumeSignal, () => {
    state.paused = false;
    state.pauseReason = undefined;
  });
  setHandler(rebaselineSignal, (arg) => {
    state.rebaseline = { reason: arg?.reason ?? 'asked for', atMs: Date.now() };
  });
  setHandler(
    configureUpdate,
    (change: DriftConfigInput) => {
      state.config = mergeConfig(state.config, change);
      show();
      return state.config;
    },
    { validator: (change: DriftConfigInput) => void mergeConfig(state.config, change) },
  );
  upsertSearchAttributes([
    { key: RecsysModel, value: model },
    { key: RecsysDrift, value: status() },
  ]);
  show();

  const every = input.continueAsNewEvery ?? DEFAULT_CONTINUE_AS_NEW_EVERY;
  for (let judged = 0; ; judged++) {
    if (judged >= every || workflowInfo().continueAsNewSuggested)
      await continueAsNew<typeof driftMonitor>({ model, env, state, continueAsNewEvery: input.continueAsNewEvery });

    const intervalMs = state.config.intervalSeconds * 1000;
    const graceMs = state.config.graceSeconds * 1000;
    const due = state.nextWindowStartMs + intervalMs + graceMs;
    if (due > Date.now()) await condition(() => state.paused, due - Date.now());
    if (state.paused) {
      upsertSearchAttributes([{ key: RecsysDrift, value: 'paused' }]);
      await condition(() => !state.paused);
      // Traffic while paused is not judged: start again at the next whole window.
      state.nextWindowStartMs = alignUp(Date.now(), state.config.intervalSeconds * 1000);
      upsertSearchAttributes([{ key: RecsysDrift, value: status() }]);
      show();
      continue;
    }
    const behind = Math.floor((Date.now() - graceMs - state.nextWindowStartMs) / intervalMs);
    if (behind > MAX_CATCH_UP_WINDOWS) state.nextWindowStartMs += (behind - MAX_CATCH_UP_WINDOWS) * intervalMs;

    const window = { startMs: state.nextWindowStartMs, endMs: state.nextWindowStartMs + intervalMs };
    const record = await judgeWindow(model, env, state, window, graceMs, me);
    state.windows.push(record);
    if (state.windows.length > KEPT_WINDOWS) state.windows.splice(0, state.windows.length - KEPT_WINDOWS);
    state.counts.windows++;
    if (record.status === 'drift') state.counts.drift++;
    if (record.status === 'insufficient-data') state.counts.insufficient++;
    state.nextWindowStartMs = window.endMs;
    upsertSearchAttributes([{ key: RecsysDrift, value: status() }]);
    show();
  }

  function show(): void {
    setCurrentDetails(details(model, env, state, status()));
  }
}

/** A new monitor's state: its config checked, its first window the next whole one. */
function initialState(input: DriftMonitorInput): DriftMonitorState {
  const config = parseDriftConfig(input.config ?? {});
  return {
    config,
    nextWindowStartMs: alignUp(Date.now(), config.intervalSeconds * 1000),
    ...(input.retrain ? { retrainOverrides: input.retrain } : {}),
    paused: false,
    baseline: null,
    windows: [],
    counts: { windows: 0, drift: 0, insufficient: 0, retrainsStarted: 0, absorbed: 0, suppressed: 0 },
  };
}

/** One window: context, summary, verdict, and what was done about it. */
async function judgeWindow(
  model: string,
  env: string,
  state: DriftMonitorState,
  window: { startMs: number; endMs: number },
  graceMs: number,
  me: string,
): Promise<WindowRecord> {
  const { config } = state;
  const ctx = await driftContext({ model });
  if (!ctx.champion) return insufficient(window, `${model} has no champion: nothing is served to watch`);

  const b = state.baseline;
  if (!b || b.championVersion !== ctx.champion.version || state.rebaseline) {
    const reason = !b
      ? `first baseline (champion v${ctx.champion.version})`
      : b.championVersion !== ctx.champion.version
        ? `champion moved v${b.championVersion} → v${ctx.champion.version}`
        : `re-baseline: ${state.rebaseline!.reason}`;
    // The first baseline starts with the monitor's first window; a new one with the first window after the ask (or
    // after the champion moved), never with a window that holds traffic from before.
    const sinceMs = b ? (state.rebaseline?.atMs ?? Date.now()) : window.startMs;
    state.baseline = {
      championVersion: ctx.champion.version,
      datasetUri: ctx.champion.datasetUri,
      datasetVersion: ctx.champion.datasetVersion,
      windowUris: [],
      reason,
      sinceMs,
      since: new Date(sinceMs).toISOString(),
    };
    state.rebaseline = undefined;
    // Persistence counts windows judged against one baseline only.
    state.windows = state.windows.map((w) => ({ ...w, breached: [], confirmed: [] }));
  }
  const baseline = state.baseline!;

  if (baseline.windowUris.length < config.baselineWindows && window.startMs < baseline.sinceMs)
    return insufficient(window, `baseline waits for the first window after ${baseline.since} (${baseline.reason})`);
  const summary = await summarizeDriftWindow({ model, env, window, graceMs, datasetUri: baseline.datasetUri });
  if (baseline.windowUris.length < config.baselineWindows) {
    // A rollout moves traffic between versions: its windows describe neither model, so they never become the baseline.
    if (ctx.rolloutRunning)
      return {
        ...insufficient(window, `baseline waits: rollout ${ctx.rolloutRunning} running`),
        summaryUri: summary.uri,
      };
    if (summary.requests < config.minRequests)
      return {
        ...insufficient(window, `baseline: ${summary.requests} requests < minRequests ${config.minRequests}`),
        requests: summary.requests,
        feedback: summary.feedback,
        summaryUri: summary.uri,
      };
    baseline.windowUris.push(summary.uri);
    return {
      ...insufficient(
        window,
        `baseline window ${baseline.windowUris.length}/${config.baselineWindows} of champion v${baseline.championVersion}`,
      ),
      requests: summary.requests,
      feedback: summary.feedback,
      summaryUri: summary.uri,
    };
  }

  // Insufficient windows do not count towards m, so hand over more than m of them.
  const history: WindowVerdict[] = state.windows.map(verdictOf);
  const { verdict, reportUri } = await evaluateDriftWindow({
    model,
    env,
    summaryUri: summary.uri,
    baselineUris: baseline.windowUris,
    config,
    history,
  });
  const record: WindowRecord = { ...verdict, summaryUri: summary.uri, reportUri };
  if (verdict.status !== 'drift') return record;

  const last = state.lastRetrain;
  if (!config.retrain) record.action = 'report only (retrain: false)';
  else if (ctx.rolloutRunning) {
    record.action = `suppressed: rollout ${ctx.rolloutRunning} running`;
    state.counts.suppressed++;
  } else if (last && last.outcome === 'started' && Date.now() - last.atMs < config.cooldownSeconds * 1000) {
    record.action = `suppressed: cooldown until ${new Date(last.atMs + config.cooldownSeconds * 1000).toISOString()}`;
    state.counts.suppressed++;
  } else {
    const start = await requestRetrain({
      model,
      trigger: 'drift',
      overrides: state.retrainOverrides,
      cause: {
        driftReportUri: reportUri,
        requestedBy: me,
        summary: `drift in ${verdict.confirmed.join(', ')} (${env})`,
      },
    });
    if (start.started) {
      state.lastRetrain = { atMs: Date.now(), workflowId: start.workflowId, reportUri, outcome: 'started' };
      state.counts.retrainsStarted++;
      record.action = `retrain started: ${start.workflowId}`;
    } else {
      state.counts.absorbed++;
      record.action = `absorbed by the running ${start.workflowId}`;
    }
  }
  return record;
}

function insufficient(window: { startMs: number; endMs: number }, reason: string): WindowRecord {
  return {
    windowStartMs: window.startMs,
    windowEndMs: window.endMs,
    status: 'insufficient-data',
    requests: 0,
    feedback: 0,
    signals: [],
    breached: [],
    alerts: [],
    confirmed: [],
    reason,
  };
}

/** The verdict part of a record (what persistence needs), without the per-signal detail. */
function verdictOf(r: WindowRecord): WindowVerdict {
  const { windowStartMs, windowEndMs, status, requests, feedback, breached, alerts, confirmed, reason } = r;
  return { windowStartMs, windowEndMs, status, requests, feedback, signals: [], breached, alerts, confirmed, reason };
}

const alignUp = (t: number, step: number) => Math.ceil(t / step) * step;

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);
function deepMerge(base: Plain, change: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(change)) out[k] = isPlain(v) && isPlain(out[k]) ? deepMerge(out[k], v) : v;
  return out;
}

/** The config with `change` applied, checked as a whole (throws naming the field). */
function mergeConfig(current: DriftConfig, change: DriftConfigInput): DriftConfig {
  return parseDriftConfig(deepMerge(current, change));
}

const fmtTime = (ms: number) => new Date(ms).toISOString().slice(11, 19);

/** The Web UI's current details: status, baseline, last retrain and the latest windows as a table. */
function details(model: string, env: string, s: DriftMonitorState, status: MonitorStatus): string {
  const b = s.baseline;
  const lines = [
    `**${status}** — ${model} in ${env}, windows of ${s.config.intervalSeconds} s (grace ${s.config.graceSeconds} s), ` +
      `drift confirmed at ${s.config.persistence.k} of ${s.config.persistence.m} windows`,
    '',
    b
      ? `Baseline: champion v${b.championVersion} on ${b.datasetVersion}, ${b.windowUris.length}/${s.config.baselineWindows} windows (${b.reason})`
      : 'Baseline: none yet',
    s.lastRetrain
      ? `Last retrain: ${s.lastRetrain.workflowId} ${s.lastRetrain.outcome} at ${new Date(s.lastRetrain.atMs).toISOString()}`
      : 'Last retrain: none',
    s.paused ? `Paused: ${s.pauseReason ?? ''}` : '',
    '',
    '| window (UTC) | status | requests | breached | confirmed | action |',
    '|---|---|---|---|---|---|',
    ...s.windows
      .slice(-10)
      .reverse()
      .map(
        (w) =>
          `| ${fmtTime(w.windowStartMs)}–${fmtTime(w.windowEndMs)} | ${w.status} | ${w.requests} | ${w.breached.join(', ')} | ` +
          `${w.confirmed.join(', ')} | ${(w.action ?? w.reason).replace(/\|/g, '/')} |`,
      ),
  ];
  return lines.join('\n');
}
