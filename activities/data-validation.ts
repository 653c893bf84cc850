/**
 * Data validation activity: compares a dataset version with the previous validated version of the same dataset and
 * writes the report as an artefact of the version. It never throws on a failing version: it returns the verdict and
 * the workflow decides (it stops before training).
 *
 * Under s3://<bucket>/datasets/<name>/:
 *   <version>/statistics.json   statistics of the version (immutable data, so computed once)
 *   <version>/validation.txt    the report as text
 *   <version>/validation.json   the report (written after the text: its presence means "validated")
 *   _validated.json             index of versions that passed or warned, in validation order; the last entry other
 *                               than the version at hand is its "previous". A failing version is never listed.
 *
 * Validating a version again with the same config returns the stored report (`reused`); with another config it is
 * validated again against the same previous version. Index updates are read-modify-write: validations of one dataset
 * are expected one at a time (the training workflow runs them in sequence per dataset).
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import { config } from '../lib/config';
import { ConfigError } from '../lib/errors';
import { detectAnomalies, reportText, type Anomaly, type ValidationStatus } from '../lib/dataset/anomalies';
import { Manifest } from '../lib/dataset/manifest';
import { computeStatistics, DatasetStatistics } from '../lib/dataset/statistics';
import { parseValidationConfig, type ValidationConfig } from '../lib/dataset/validation-config';
import { localDataset } from '../lib/dataset/cache';
import { datasetNameUri, datasetFileUri, datasetRef, manifestUri, type DatasetRef } from '../lib/dataset/ref';
import type { ValidateDatasetInput, ValidationResult } from './contracts';
import type { ActivityDeps } from './deps';
import { activityHeartbeat, throwIfCancelled } from './heartbeat';

type Deps = Pick<ActivityDeps, 'store' | 'config'>;

const StoredReport = z.object({
  reportVersion: z.literal(1),
  name: z.string(),
  version: z.string(),
  validatedAt: z.string(),
  configHash: z.string(),
  config: z.unknown(),
  statisticsUri: z.string(),
  textUri: z.string(),
  report: z.object({
    status: z.enum(['pass', 'warn', 'fail']),
    anomalies: z.array(
      z.object({
        check: z.string(),
        severity: z.enum(['warn', 'fail']),
        message: z.string(),
        value: z.number(),
        threshold: z.number(),
      }),
    ),
    previousVersion: z.string().optional(),
    checked: z.array(z.string()),
    skipped: z.array(z.object({ check: z.string(), reason: z.string() })),
    metrics: z.record(z.string(), z.number()),
    summary: z.string(),
  }),
});
type StoredReport = z.infer<typeof StoredReport>;

const ValidatedIndex = z.object({
  versions: z.array(z.object({ version: z.string(), validatedAt: z.string(), status: z.enum(['pass', 'warn']) })),
});
type ValidatedIndex = z.infer<typeof ValidatedIndex>;

export const validatedIndexUri = (name: string, bucket = config().bucket) =>
  `${datasetNameUri(bucket, name)}_validated.json`;

const configHash = (cfg: ValidationConfig) =>
  createHash('sha256').update(JSON.stringify(cfg)).digest('hex').slice(0, 16);

function progress(detail: object): void {
  throwIfCancelled();
  activityHeartbeat(detail);
}

async function readIndex(deps: Deps, name: string): Promise<ValidatedIndex> {
  const raw = await deps.store.getJson(validatedIndexUri(name, deps.config.bucket));
  return raw === undefined ? { versions: [] } : ValidatedIndex.parse(raw);
}

/** Lists a passing version once (idempotent) and removes a failing one. */
async function recordOutcome(
  deps: Deps,
  name: string,
  version: string,
  status: ValidationStatus,
  at: string,
): Promise<void> {
  const index = await readIndex(deps, name);
  const listed = index.versions.some((v) => v.version === version);
  if (status === 'fail') {
    if (!listed) return;
    index.versions = index.versions.filter((v) => v.version !== version);
  } else {
    if (listed) return;
    index.versions.push({ version, validatedAt: at, status });
  }
  await deps.store.putJson(validatedIndexUri(name, deps.config.bucket), index);
}

/** The previous validated version: the last listed before this one (or the last listed, if this one is not). */
function previousOf(index: ValidatedIndex, version: string): string | undefined {
  const at = index.versions.findIndex((v) => v.version === version);
  const before = at === -1 ? index.versions : index.versions.slice(0, at);
  return before[before.length - 1]?.version;
}

/** The statistics of a version: stored ones, or computed from its files and stored. */
export async function versionStatistics(
  deps: Deps,
  ref: DatasetRef,
): Promise<{ stats: DatasetStatistics; uri: string }> {
  const { store } = deps;
  const uri = datasetFileUri(ref.uri, 'statistics.json');
  const manifestAt = manifestUri(ref.uri);
  const stored = await store.getJson(uri);
  if (stored !== undefined) {
    const parsed = DatasetStatistics.safeParse(stored);
    if (parsed.success) return { stats: parsed.data, uri };
  }
  const rawManifest = await store.getJson(manifestAt);
  if (rawManifest === undefined)
    throw ApplicationFailure.nonRetryable(
      `dataset ${ref.name}@${ref.version} has no manifest at ${manifestAt}`,
      'DatasetNotFound',
    );
  const manifest = Manifest.parse(rawManifest);
  progress({ step: 'download', version: ref.version });
  const dir = await localDataset(manifestAt, store, deps.config.cacheDir);
  progress({ step: 'statistics', version: ref.version });
  const stats = await computeStatistics(dir, manifest);
  await store.putJson(uri, stats);
  return { stats, uri };
}

const resultOf = (stored: StoredReport, reportUri: string, reused: boolean): ValidationResult => ({
  status: stored.report.status,
  anomalies: stored.report.anomalies as Anomaly[],
  ...(stored.report.previousVersion !== undefined ? { previousVersion: stored.report.previousVersion } : {}),
  reportUri,
  summary: stored.report.summary,
  reused,
});

export function dataValidationActivities(deps: ActivityDeps) {
  return {
    /** Validates a dataset version against the previous validated version of the same dataset. */
    validateDataset: (input: ValidateDatasetInput) => validateDataset(deps, input),
  };
}

async function validateDataset(deps: Deps, input: ValidateDatasetInput): Promise<ValidationResult> {
  let cfg: ValidationConfig;
  try {
    cfg = parseValidationConfig(input.config ?? {});
  } catch (err) {
    if (err instanceof ConfigError) throw ApplicationFailure.nonRetryable(err.message, 'ConfigError');
    throw err;
  }
  const { dataset } = input;
  const { store } = deps;
  const hash = configHash(cfg);
  const reportUri = datasetFileUri(dataset.uri, 'validation.json');
  const textUri = datasetFileUri(dataset.uri, 'validation.txt');

  const existing = await store.getJson(reportUri);
  if (existing !== undefined) {
    const stored = StoredReport.safeParse(existing);
    if (stored.success && stored.data.configHash === hash) {
      // A crash between the report and the index update is completed here.
      await recordOutcome(deps, dataset.name, dataset.version, stored.data.report.status, stored.data.validatedAt);
      return resultOf(stored.data, reportUri, true);
    }
  }

  progress({ step: 'statistics', version: dataset.version });
  const current = await versionStatistics(deps, dataset);
  const index = await readIndex(deps, dataset.name);
  const previousVersion = previousOf(index, dataset.version);
  let previous: { version: string; stats: DatasetStatistics } | undefined;
  if (previousVersion !== undefined) {
    progress({ step: 'statistics', version: previousVersion, previous: true });
    const { stats } = await versionStatistics(deps, datasetRef(deps.config.bucket, dataset.name, previousVersion));
    previous = { version: previousVersion, stats };
  }

  // The rows this version adds after the previous one, judged on their own so that a break in them is not diluted.
  let newRows: DatasetStatistics | undefined;
  if (previous && current.stats.timestamp.max > previous.stats.timestamp.max) {
    progress({ step: 'statistics', version: dataset.version, newerThan: previous.stats.timestamp.max });
    const manifest = Manifest.parse(await store.getJson(manifestUri(dataset.uri)));
    newRows = await computeStatistics(
      await localDataset(manifestUri(dataset.uri), store, deps.config.cacheDir),
      manifest,
      {
        newerThan: previous.stats.timestamp.max,
      },
    );
  }

  progress({ step: 'compare', version: dataset.version, previousVersion });
  const report = detectAnomalies(current.stats, previous, cfg, newRows);
  const stored: StoredReport = {
    reportVersion: 1,
    name: dataset.name,
    version: dataset.version,
    validatedAt: new Date().toISOString(),
    configHash: hash,
    config: cfg,
    statisticsUri: current.uri,
    textUri,
    report,
  };
  await store.putBytes(textUri, reportText(dataset.name, dataset.version, report), 'text/plain; charset=utf-8');
  await store.putJson(reportUri, stored);
  await recordOutcome(deps, dataset.name, dataset.version, report.status, stored.validatedAt);
  return resultOf(stored, reportUri, false);
}
