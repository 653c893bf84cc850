/**
 * ETL activity: raw interaction logs (s3:// URIs) → a validated, content-addressed dataset version.
 *
 * Each source is read as the config says or with its own reading (lib/dataset/source.ts), so served feedback joins
 * the logs a dataset was first built from; the manifest records how each source was read.
 *
 * Nothing is written until every record has been validated, and the manifest goes last, so a failed or interrupted
 * run never leaves a version behind. Re-running on the same input and config finds the manifest and reuses it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { ConfigError, DataValidationError, type InputProblem } from '../lib/errors';
import { fileDigest, sha256File, withTempDir } from '../lib/files';
import { parseS3Uri } from '../lib/object-store';
import { buildDataset, dedupe, type BuiltDataset, type SourcedInteraction } from '../lib/dataset/build';
import { EtlConfig } from '../lib/dataset/etl-config';
import { Manifest, manifestSources, type ManifestSource } from '../lib/dataset/manifest';
import {
  datasetFileUri,
  datasetUri,
  DATASET_NAME,
  manifestUri as manifestUriOf,
  type DatasetVersion,
} from '../lib/dataset/ref';
import { isProblem, readRaw } from '../lib/dataset/raw-formats';
import {
  parseSources,
  readingOf,
  sourcesKey,
  sourceUri,
  type SourceReading,
  type SourceSpec,
} from '../lib/dataset/source';
import { SPLIT_NAMES } from '../lib/dataset/split';
import { validateRecord } from '../lib/dataset/validate';
import { INTERACTION_SCHEMA, ITEM_SCHEMA, USER_SCHEMA, writeDatasetParquet } from '../lib/dataset/write-parquet';
import type { EtlInput } from './contracts';
import { defaultDeps, type ActivityDeps } from './deps';
import { activityHeartbeat, heartbeating, throwIfCancelled } from './heartbeat';

/** A downloaded source: where it is here, and as given (a URI string when absent: read as the config says). */
export interface LocalSource {
  uri: string;
  local: string;
  source?: SourceSpec;
}

/** Reads and validates every source; throws DataValidationError naming file, line, field and value. */
export async function readAndValidate(
  files: LocalSource[],
  cfg: EtlConfig,
  onProgress: (rows: number) => void = () => undefined,
): Promise<{ rows: SourcedInteraction[]; sources: ManifestSource[] }> {
  const now = Math.floor(Date.now() / 1000);
  const rows: SourcedInteraction[] = [];
  const problems: InputProblem[] = [];
  let totalProblems = 0;
  const sources: ManifestSource[] = [];
  for (const { uri, local, source = uri } of files) {
    const reading: SourceReading = readingOf(source, cfg);
    // The config's rules with this source's columns and time unit.
    const rules = { ...cfg, columns: reading.columns, timestampUnit: reading.timestampUnit };
    let records = 0;
    const skipped: Record<string, number> = {};
    const onSkip = (event: string) => (skipped[event] = (skipped[event] ?? 0) + 1);
    const report = (p: InputProblem[]) => {
      totalProblems += p.length;
      for (const x of p) if (problems.length < cfg.maxReportedProblems) problems.push(x);
    };
    const options = { events: reading.events, rating: reading.rating, onSkip };
    for await (const batch of readRaw(local, reading.format, reading.columns, options)) {
      for (const entry of batch) {
        if (isProblem(entry)) {
          report([{ file: uri, ...entry }]);
          continue;
        }
        records += 1;
        const result = validateRecord(entry, uri, rules, now);
        if (Array.isArray(result)) report(result);
        else rows.push(result);
      }
      onProgress(rows.length);
    }
    // A feedback log whose lines were all skipped (impressions only) is not empty: it had nothing to give.
    const skippedAny = Object.keys(skipped).length > 0;
    if (records === 0 && totalProblems === 0 && !skippedAny)
      report([{ file: uri, line: 1, field: '(file)', value: '', message: 'has no records' }]);
    sources.push({
      uri,
      ...(await fileDigest(local)),
      records,
      format: reading.format,
      spec: source,
      ...(skippedAny ? { skipped } : {}),
    });
  }
  if (totalProblems > 0) throw new DataValidationError(problems, totalProblems);
  return { rows, sources };
}

function manifestOf(
  name: string,
  uri: string,
  cfg: EtlConfig,
  ds: BuiltDataset,
  raw: number,
  sources: ManifestSource[],
  files: Manifest['files'],
): Manifest {
  return {
    schemaVersion: 1,
    name,
    version: ds.version,
    uri,
    createdAt: new Date().toISOString(),
    config: cfg,
    sources,
    files,
    schema: {
      ...Object.fromEntries(SPLIT_NAMES.map((s) => [`${s}.parquet`, INTERACTION_SCHEMA])),
      'users.parquet': USER_SCHEMA,
      'items.parquet': ITEM_SCHEMA,
    },
    counts: {
      raw,
      duplicatesDropped: ds.duplicatesDropped,
      interactions: ds.rows.length,
      users: ds.users.length,
      items: ds.items.length,
      train: ds.splitCounts[0],
      valid: ds.splitCounts[1],
      test: ds.splitCounts[2],
    },
    split: {
      ...ds.boundaries,
      rule: 'global time split: train ts < validStart <= valid ts < testStart <= test ts',
    },
    stats: ds.stats,
  };
}

/** The ETL, callable outside Temporal too (benchmarks, tests). */
export async function buildDatasetVersion(
  input: EtlInput,
  progress: (detail: object) => void = () => undefined,
  deps: Pick<ActivityDeps, 'store' | 'config'> = defaultDeps(),
): Promise<DatasetVersion> {
  if (!DATASET_NAME.test(input.name))
    throw ApplicationFailure.nonRetryable(
      `dataset name ${JSON.stringify(input.name)} must match ${String(DATASET_NAME)}`,
      'ConfigError',
    );
  const parsed = EtlConfig.safeParse(input.config);
  if (!parsed.success)
    throw ApplicationFailure.nonRetryable(`invalid ETL config: ${parsed.error.message}`, 'ConfigError');
  const cfg = parsed.data;
  let specs: SourceSpec[];
  try {
    specs = parseSources(input.sources, cfg);
  } catch (err) {
    if (err instanceof ConfigError)
      throw ApplicationFailure.nonRetryable(`invalid sources: ${err.message}`, 'ConfigError');
    throw err;
  }
  const { store } = deps;
  const { bucket } = deps.config;

  return withTempDir('etl', async (dir) => {
    const files: LocalSource[] = [];
    for (const [i, source] of specs.entries()) {
      const uri = sourceUri(source);
      parseS3Uri(uri);
      // The name keeps the source's extension: `.gz` is what makes the reader decompress.
      const local = path.join(dir, 'raw', `${i}-${path.posix.basename(uri)}`);
      if (!(await store.exists(uri)))
        throw ApplicationFailure.nonRetryable(`source ${uri} does not exist`, 'SourceNotFound');
      progress({ step: 'download', source: i + 1, of: specs.length, uri });
      let bytes = 0;
      // A large source downloads for longer than the heartbeat timeout: heartbeat while it does.
      await heartbeating(
        () => ({ step: 'download', source: i + 1, of: specs.length, uri, bytes }),
        () => store.downloadFile(uri, local, (n) => (bytes = n)),
      );
      files.push({ uri, local, source });
    }
    progress({ step: 'validate', files: files.length });

    let validated: Awaited<ReturnType<typeof readAndValidate>>;
    try {
      validated = await readAndValidate(files, cfg, (rows) => progress({ step: 'validate', rows }));
    } catch (err) {
      if (err instanceof DataValidationError)
        throw ApplicationFailure.create({
          message: err.message,
          type: 'DataValidationError',
          nonRetryable: true,
          details: [{ problems: err.problems, totalProblems: err.totalProblems }],
        });
      throw err;
    }
    const raw = validated.rows.length;
    const deduped = dedupe(validated.rows, cfg.duplicates);
    if (deduped.problems.length > 0) {
      const e = new DataValidationError(deduped.problems.slice(0, cfg.maxReportedProblems), deduped.problems.length);
      throw ApplicationFailure.create({ message: e.message, type: 'DataValidationError', nonRetryable: true });
    }
    let ds: BuiltDataset;
    try {
      ds = buildDataset(
        deduped.rows,
        deduped.dropped,
        cfg,
        sourcesKey(
          validated.sources.map((s) => ({ source: s.spec ?? s.uri, sha256: s.sha256 })),
          cfg,
        ),
      );
    } catch (err) {
      throw ApplicationFailure.nonRetryable((err as Error).message, 'DataValidationError');
    }
    const prefix = datasetUri(bucket, input.name, ds.version);
    const manifestUri = manifestUriOf(prefix);
    const existing = await store.getJson(manifestUri);
    if (existing !== undefined) {
      const m = Manifest.parse(existing);
      // The stored version's own sources: the same content read the same way (the address covers both).
      return {
        name: input.name,
        version: m.version,
        uri: prefix,
        manifestUri,
        counts: m.counts,
        reused: true,
        sources: manifestSources(m),
      };
    }

    progress({ step: 'write', version: ds.version });
    const out = path.join(dir, 'out');
    await fs.mkdir(out);
    const rowsByFile = await heartbeating(
      () => ({ step: 'write', version: ds.version }),
      () => writeDatasetParquet(ds, out),
    );
    const manifestFiles: Manifest['files'] = {};
    // Data files first, manifest last: readers treat a version without a manifest as nonexistent.
    for (const [file, rows] of Object.entries(rowsByFile)) {
      const local = path.join(out, file);
      const uri = datasetFileUri(prefix, file);
      await heartbeating(
        () => ({ step: 'upload', version: ds.version, file }),
        async () => {
          await store.putFile(uri, local);
          manifestFiles[file] = { uri, rows, sha256: await sha256File(local) };
        },
      );
    }
    const manifest = manifestOf(input.name, prefix, cfg, ds, raw, validated.sources, manifestFiles);
    await store.putJson(manifestUri, manifest);
    return {
      name: input.name,
      version: ds.version,
      uri: prefix,
      manifestUri,
      counts: manifest.counts,
      reused: false,
      sources: specs,
    };
  });
}

export function etlActivities(deps: ActivityDeps) {
  return {
    /** Raw logs → a validated, content-addressed dataset version (reused when it exists). */
    etl: (input: EtlInput): Promise<DatasetVersion> =>
      buildDatasetVersion(
        input,
        (detail) => {
          throwIfCancelled();
          activityHeartbeat(detail);
        },
        deps,
      ),
  };
}
