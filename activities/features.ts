/**
 * The online feature store's activity: `backfillFeatures` loads a dataset version's latest histories into Redis (what
 * a rollout can call when it promotes a version, so a cold store serves what the dataset fallback serves). It
 * heartbeats its progress, stops at the next batch when cancelled, and a retry resumes after the users the last
 * heartbeat reported; being idempotent (serving/feature-backfill.ts), a rerun of what was written changes nothing.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import { DatasetRefError, manifestUri, parseDatasetUri } from '../lib/dataset/ref';
import { backfillFeatures, openBackfillStore, type BackfillProgress } from '../serving/feature-backfill';
import type { ActivityDeps } from './deps';
import { cancellationSignal, heartbeating, lastHeartbeatDetails } from './heartbeat';

export interface BackfillFeaturesInput {
  /** s3://<bucket>/datasets/<name>/<version>/; the namespace is its name. */
  datasetUri: string;
  /** Interactions kept per user (default 50, the store's default and the models' default history_len). */
  historyLength?: number;
}

export interface BackfillFeaturesResult extends BackfillProgress {
  namespace: string;
  datasetVersion: string;
  historyLength: number;
  /** Users a previous attempt had finished (skipped by this one). */
  resumedAtUser: number;
}

async function backfill(deps: ActivityDeps, input: BackfillFeaturesInput): Promise<BackfillFeaturesResult> {
  let uri: string;
  try {
    uri = parseDatasetUri(input.datasetUri).uri;
  } catch (err) {
    if (err instanceof DatasetRefError) throw ApplicationFailure.nonRetryable(err.message, 'DatasetRefError');
    throw err;
  }
  if ((await deps.store.getJson(manifestUri(uri))) === undefined)
    throw ApplicationFailure.nonRetryable(`dataset ${uri} has no manifest.json: no such version`, 'DatasetNotFound');
  const previous = lastHeartbeatDetails<BackfillProgress>();
  const resumedAtUser = previous?.users ?? 0;
  let progress: BackfillProgress | undefined = previous;
  const store = await openBackfillStore({ url: deps.config.redisUrl, historyLength: input.historyLength });
  const signal = cancellationSignal();
  try {
    const r = await heartbeating(
      () => progress ?? { step: 'reading the dataset' },
      () =>
        backfillFeatures({
          datasetUri: uri,
          store,
          objectStore: deps.store,
          cacheDir: deps.config.cacheDir,
          startAtUser: resumedAtUser,
          signal,
          // Counts carry over from the attempt that was resumed, so the heartbeat stays cumulative.
          onProgress: (p) =>
            (progress = {
              ...p,
              events: p.events + (previous?.events ?? 0),
              recorded: p.recorded + (previous?.recorded ?? 0),
              duplicates: p.duplicates + (previous?.duplicates ?? 0),
            }),
        }),
    );
    return { ...r, ...(progress ?? {}), resumedAtUser };
  } catch (err) {
    if (signal?.aborted) throw new CancelledFailure('backfillFeatures cancelled', [progress]);
    throw err;
  } finally {
    await store.close();
  }
}

export function featureActivities(deps: ActivityDeps) {
  return {
    /** Loads a dataset version's latest histories per user into the online store (idempotent, resumable). */
    backfillFeatures: (input: BackfillFeaturesInput): Promise<BackfillFeaturesResult> => backfill(deps, input),
  };
}
