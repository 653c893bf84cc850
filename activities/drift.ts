/**
 * Drift monitoring activities: what the monitor needs to know about the model (its champion and the dataset that
 * defines the buckets, whether a rollout is moving traffic), one window of served logs reduced to bucket counts, and
 * the window judged against the baseline. Summaries and reports are keyed by window, so a retry or a replay after a
 * worker restart reuses what exists and never counts a window twice.
 */
import path from 'node:path';
import { ApplicationFailure, getClient } from '@temporalio/activity';
import { loadDriftReference, summarizeWindow } from '../fleet/logs/summarize';
import { parseDatasetUri } from '../lib/dataset/ref';
import { evaluateWindow } from '../lib/drift/evaluate';
import { mergeCounts, type WindowSummary } from '../lib/drift/summary';
import { tagsOf } from '../lib/mlflow/client';
import { ALIASES, TAGS } from '../lib/mlflow/tags';
import { checkModelName } from '../lib/model-name';
import { defaultLogPrefix } from '../serving/log-uploader';
import type {
  DriftContext,
  EvaluateWindowInput,
  EvaluateWindowResult,
  SummarizeWindowInput,
  SummarizeWindowResult,
} from './contracts';
import type { ActivityDeps } from './deps';
import { heartbeating } from './heartbeat';

const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace('.000Z', 'Z');

/** Where a monitor's objects live: s3://<bucket>/drift/<model>/<env>/... */
export const driftPrefix = (bucket: string, model: string, env: string): string =>
  `s3://${bucket}/drift/${checkModelName(model)}/${env}`;

/** A window's summary key: fixed by the window and the dataset that defines its buckets. */
export const summaryUriOf = (bucket: string, i: SummarizeWindowInput, datasetVersion: string): string =>
  `${driftPrefix(bucket, i.model, i.env)}/windows/${datasetVersion}/${stamp(i.window.startMs)}-${(i.window.endMs - i.window.startMs) / 1000}s.json`;

async function summarize(deps: ActivityDeps, input: SummarizeWindowInput): Promise<SummarizeWindowResult> {
  const { store, config } = deps;
  const dataset = parseDatasetUri(input.datasetUri);
  const uri = summaryUriOf(config.bucket, input, dataset.version);
  const existing = (await store.getJson(uri)) as WindowSummary | undefined;
  if (existing) return resultOf(uri, existing, true);
  const cacheDir = path.join(config.cacheDir, 'drift');
  const reference = await loadDriftReference(store, dataset.uri, cacheDir);
  let progress: object = { step: 'list' };
  const summary = await heartbeating(
    () => ({ window: new Date(input.window.startMs).toISOString(), ...progress }),
    () =>
      summarizeWindow({
        store,
        prefix: defaultLogPrefix(config.bucket),
        model: input.model,
        env: input.env,
        window: input.window,
        graceMs: input.graceMs,
        reference,
        cacheDir,
        onProgress: (p: object) => (progress = p),
      }),
  );
  await store.putJson(uri, summary);
  return resultOf(uri, summary, false);
}

const resultOf = (uri: string, s: WindowSummary, reused: boolean): SummarizeWindowResult => ({
  uri,
  requests: s.requests,
  feedback: s.feedback,
  versions: s.versions,
  chunks: s.chunks,
  reused,
});

async function evaluate(deps: ActivityDeps, input: EvaluateWindowInput): Promise<EvaluateWindowResult> {
  const { store, config } = deps;
  const load = async (uri: string): Promise<WindowSummary> => {
    const s = (await store.getJson(uri)) as WindowSummary | undefined;
    if (!s) throw ApplicationFailure.nonRetryable(`drift summary ${uri} is missing`, 'MissingSummary');
    return s;
  };
  const current = await load(input.summaryUri);
  const baseline = await Promise.all(input.baselineUris.map(load));
  const verdict = evaluateWindow({
    reference: mergeCounts(baseline),
    current,
    config: input.config,
    history: input.history,
  });
  const reportUri = `${driftPrefix(config.bucket, input.model, input.env)}/reports/${stamp(current.window.startMs)}.json`;
  await store.putJson(reportUri, {
    reportVersion: 1,
    model: input.model,
    env: input.env,
    window: current.window,
    reference: current.reference,
    verdict,
    summaryUri: input.summaryUri,
    baselineUris: input.baselineUris,
    config: input.config,
    current: { requests: current.requests, feedback: current.feedback, versions: current.versions },
    concentration: current.concentration,
  });
  return { verdict, reportUri };
}

async function context(deps: ActivityDeps, model: string): Promise<DriftContext> {
  const champion = await deps.mlflow.getVersionByAlias(checkModelName(model), ALIASES.champion);
  const datasetUri = champion && tagsOf(champion)[TAGS.datasetUri];
  const running = getClient().workflow.list({
    query: `WorkflowType = 'rollout' AND RecsysModel = '${model}' AND ExecutionStatus = 'Running'`,
    pageSize: 1,
  });
  let rolloutRunning: string | undefined;
  for await (const w of running) {
    rolloutRunning = w.workflowId;
    break;
  }
  return {
    ...(champion && datasetUri
      ? {
          champion: {
            version: champion.version,
            datasetUri,
            datasetVersion: parseDatasetUri(datasetUri).version,
          },
        }
      : {}),
    ...(rolloutRunning ? { rolloutRunning } : {}),
  };
}

export function driftActivities(deps: ActivityDeps) {
  return {
    /** The champion watched and whether a rollout of the model is moving traffic now. */
    driftContext: (input: { model: string }): Promise<DriftContext> => context(deps, input.model),
    /** One window of served logs reduced to bucket counts (reused when the window's summary exists). */
    summarizeDriftWindow: (input: SummarizeWindowInput): Promise<SummarizeWindowResult> => summarize(deps, input),
    /** One window judged against the baseline, with persistence over the earlier verdicts; writes its report. */
    evaluateDriftWindow: (input: EvaluateWindowInput): Promise<EvaluateWindowResult> => evaluate(deps, input),
  };
}
