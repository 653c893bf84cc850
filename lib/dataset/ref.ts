/**
 * The dataset reference: the one way a dataset version is named and located, by the ETL, the steps after it, the
 * registry's lineage tags, serving and the simulator. Versions live at s3://<bucket>/datasets/<name>/<version>/ with
 * `manifest.json` written last (no manifest, no dataset); every URI of a version is built here and nowhere else.
 */
import type { Manifest } from './manifest';
import type { SourceSpec } from './source';

/** Names a dataset version and where it lives. */
export interface DatasetRef {
  name: string;
  version: string;
  /** s3:// prefix of the version, with a trailing slash. */
  uri: string;
}

/** A dataset version as the ETL returns it: the reference, its manifest and counts. */
export interface DatasetVersion extends DatasetRef {
  manifestUri: string;
  counts: Manifest['counts'];
  /** True when this exact version already existed and was reused. */
  reused: boolean;
  /** The sources it was built from, as the ETL takes them (what a retrain appends new logs to). */
  sources?: SourceSpec[];
}

/** Dataset names: safe as a path segment and an S3 key segment. */
export const DATASET_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Versions are content hashes; whatever comes from a tag or a URI must at least be one safe path segment. */
export const DATASET_VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class DatasetRefError extends Error {
  override name = 'DatasetRefError';
}

export function checkDatasetName(name: string): string {
  if (!DATASET_NAME.test(name))
    throw new DatasetRefError(`dataset name ${JSON.stringify(name)} must match ${String(DATASET_NAME)}`);
  return name;
}

export function checkDatasetVersion(version: string): string {
  if (!DATASET_VERSION.test(version))
    throw new DatasetRefError(`dataset version ${JSON.stringify(version)} must match ${String(DATASET_VERSION)}`);
  return version;
}

/** `s3://<bucket>/datasets/<name>/`: every version of a dataset, and indexes over them. */
export function datasetNameUri(bucket: string, name: string): string {
  return `s3://${bucket}/datasets/${checkDatasetName(name)}/`;
}

/** `s3://<bucket>/datasets/<name>/<version>/` */
export function datasetUri(bucket: string, name: string, version: string): string {
  return `${datasetNameUri(bucket, name)}${checkDatasetVersion(version)}/`;
}

/** The reference of a version in a bucket. */
export function datasetRef(bucket: string, name: string, version: string): DatasetRef {
  return { name, version, uri: datasetUri(bucket, name, version) };
}

/** The manifest of the version at a dataset URI (trailing slash optional). */
export function manifestUri(uri: string): string {
  return `${uri.endsWith('/') ? uri : `${uri}/`}manifest.json`;
}

/** A file of the version at a dataset URI: `statistics.json`, `train.parquet`, ... */
export function datasetFileUri(uri: string, file: string): string {
  return `${uri.endsWith('/') ? uri : `${uri}/`}${file}`;
}

/** `s3://<bucket>/[...]datasets/<name>/<version>[/]` → the reference (normalised, checked); throws naming the URI. */
export function parseDatasetUri(uri: string): DatasetRef {
  const m = /^s3:\/\/[^/]+\/(?:.*\/)?datasets\/([^/]+)\/([^/]+)\/?$/.exec(uri);
  if (!m) throw new DatasetRefError(`a dataset URI looks like s3://<bucket>/datasets/<name>/<version>/, got ${uri}`);
  return {
    name: checkDatasetName(m[1]!),
    version: checkDatasetVersion(m[2]!),
    uri: uri.endsWith('/') ? uri : `${uri}/`,
  };
}

/**
 * File names of a version (the keys of its manifest's `files`) become local paths in the dataset cache, so one must be
 * a plain file name: no directory part, no `..`, no hidden name (the cache keeps `.complete` and temporary files).
 */
export const DATASET_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkDatasetFileName(file: string): string {
  if (!DATASET_FILE.test(file) || file.includes('..'))
    throw new DatasetRefError(
      `dataset file name ${JSON.stringify(file)} must be a plain file name matching ${String(DATASET_FILE)}, without '..'`,
    );
  return file;
}
