/**
 * Data validation activity: compares a dataset version with the previous validated version of the same dataset and
 * writes the report as an artefact of the version. It never throws on a failing version: it returns the verdict and
 * the workflow decides (it stops before training).
 *
 * Under s3://<bucket>/datasets/<name>/:
 *   <version>/statistics.json   statistics of the version (immutable data, so computed once)
 *   <version>/validation.txt    the report as text
 *   <version>/validation.json   the report (written after the text: its presence means "validated")
 *   _validated/<time>-<status>-<version>.json
 *                               the index: one marker per version that passed or warned, named so that listing
 *                               gives validation order; the last entry other than the version at hand is its
 *                               "previous". A failing version is never listed.
 *   _validated.json             a view of the index for people and older readers, rebuilt from the markers
 *
 * Validating a version again with the same config returns the stored report (`reused`); with another config it is
 * validated again against the same previous version. The index is never read-modify-written: each validation adds or
 * deletes only its own version's marker, so two validations of one dataset at once cannot lose each other's entry
 * (versitygw 1.7's conditional PutObject is not atomic under concurrency, so a compare-and-swap on one index object
 * would not be safe). The view is rewritten until it matches the markers a writer lists after its own write.
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
import {
  checkDatasetVersion,
  datasetNameUri,
  datasetFileUri,
  datasetRef,
  manifestUri,
  type DatasetRef,
} from '../lib/dataset/ref';
import type { ValidateDatasetInput, ValidationResult } from './contracts';
import type { ActivityDeps } from './deps';
import { activityHeartbeat, heartbeating, throwIfCancelled } from './heartbeat';

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

const IndexEntry = z.object({ version: z.string(), validatedAt: z.string(), status: z.enum(['pass', 'warn']) });
type IndexEntry = z.infer<typeof IndexEntry>;
/** The view's marker of being derived from `_validated/`; a `_validated.json` without it predates the markers. */
const DERIVED_FROM = '_validated/';
const ValidatedIndex = z.object({ derivedFrom: z.literal(DERIVED_FROM).optional(), versions: z.array(IndexEntry) });
type ValidatedIndex = z.infer<typeof ValidatedIndex>;

export const validatedIndexUri = (name: string, bucket = config().bucket) =>
  `${datasetNameUri(bucket, name)}_validated.json`;
const markerPrefix = (name: string, bucket: string) => `${datasetNameUri(bucket, name)}${DERIVED_FROM}`;

/** `2026-11-22T04:07:49.123Z` → `20261122T040749123Z`: fixed width, so names sort in time order. */
const stampOf = (iso: string) => new Date(iso).toISOString().replace(/[-:.]/g, '');
const MARKER = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-(pass|warn)-(.+)\.json$/;

const markerUri = (deps: Deps, name: string, e: IndexEntry) =>
  `${markerPrefix(name, deps.config.bucket)}${stampOf(e.validatedAt)}-${e.status}-${checkDatasetVersion(e.version)}.json`;

function entryOf(key: string): IndexEntry | undefined {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, ms, status, version] = m;
  return {
    version: version!,
    validatedAt: `${y}-${mo}-${d}T${h}:${mi}:${sec}.${ms}Z`,
    status: status as IndexEntry['status'],
  };
}

const configHash = (cfg: ValidationConfig) =>
  createHash('sha256').update(JSON.stringify(cfg)).digest('hex').slice(0, 16);

function progress(detail: object): void {
  throwIfCancelled();
  activityHeartbeat(detail);
}

/** Markers of every entry of a `_validated.json` written before the markers existed (same names on every run). */
async function adoptLegacyIndex(deps: Deps, name: string): Promise<void> {
  const raw = await deps.store.getJson(validatedIndexUri(name, deps.config.bucket));
  if (raw === undefined) return;
  const view = ValidatedIndex.parse(raw);
  if (view.derivedFrom !== undefined) return;
  for (const e of view.versions) await deps.store.putJson(markerUri(deps, name, e), e);
}

/** The index: one entry per listed version, in validation order (listing order of the marker names). */
async function readIndex(deps: Deps, name: string): Promise<ValidatedIndex> {
  await adoptLegacyIndex(deps, name);
  return listIndex(deps, name);
}

async function listIndex(deps: Deps, name: string): Promise<ValidatedIndex> {
  const prefix = markerPrefix(name, deps.config.bucket);
  const uris = (await deps.store.list(prefix)).sort();
  const versions: IndexEntry[] = [];
  for (const uri of uris) {
    const e = entryOf(uri.slice(prefix.length));
    // Two validations of one version at once may both add a marker: the first one counts.
    if (e && !versions.some((v) => v.version === e.version)) versions.push(e);
  }
  return { versions };
}

/** Markers of one version (usually one). */
async function markersOf(deps: Deps, name: string, version: string): Promise<string[]> {
  const prefix = markerPrefix(name, deps.config.bucket);
  return (await deps.store.list(prefix)).filter((u) => entryOf(u.slice(prefix.length))?.version === version);
}

const VIEW_ROUNDS = 10;

/**
 * Rewrites `_validated.json` from the markers until what it holds is what they list. Another validation may list
 * before this one's marker exists and write its view after this one's; the last writer to land sees the difference
 * on its next listing. Bounded: the markers are the index, so a view left behind is corrected by the next validation.
 */
async function refreshView(deps: Deps, name: string): Promise<void> {
  const uri = validatedIndexUri(name, deps.config.bucket);
  for (let round = 0; round < VIEW_ROUNDS; round++) {
    const { versions } = await listIndex(deps, name);
    const raw = await deps.store.getJson(uri);
    const view = raw === undefined ? undefined : ValidatedIndex.parse(raw);
    const upToDate =
      view === undefined
        ? versions.length === 0
        : view.derivedFrom !== undefined && JSON.stringify(view.versions) === JSON.stringify(versions);
    if (upToDate) return;
    await deps.store.putJson(uri, { derivedFrom: DERIVED_FROM, versions } satisfies ValidatedIndex);
  }
}

/** Lists a passing version once (idempotent) and removes a failing one; only this version's marker is touched. */
async function recordOutcome(
  deps: Deps,
  name: string,
  version: string,
  status: ValidationStatus,
  at: string,
): Promise<void> {
  await adoptLegacyIndex(deps, name);
  const markers = await markersOf(deps, name, version);
  if (status === 'fail') for (const uri of markers) await deps.store.delete(uri);
  else if (markers.length === 0) {
    const entry: IndexEntry = { version, validatedAt: at, status };
    await deps.store.putJson(markerUri(deps, name, entry), entry);
  }
  await refreshView(deps, name);
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
  // Downloads and DuckDB scans of a large version outlast the heartbeat timeout: heartbeat while they run.
  const dir = await heartbeating(
    () => ({ step: 'download', version: ref.version }),
    () => localDataset(manifestAt, store, deps.config.cacheDir),
  );
  progress({ step: 'statistics', version: ref.version });
  const stats = await heartbeating(
    () => ({ step: 'statistics', version: ref.version }),
    () => computeStatistics(dir, manifest),
  );
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
    const newerThan = previous.stats.timestamp.max;
    newRows = await heartbeating(
      () => ({ step: 'statistics', version: dataset.version, newerThan }),
      async () =>
        computeStatistics(await localDataset(manifestUri(dataset.uri), store, deps.config.cacheDir), manifest, {
          newerThan,
        }),
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
