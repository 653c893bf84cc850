/**
 * The reference a drift window is bucketed against: the dataset version a model was trained on, reduced to what the
 * buckets of lib/drift/summary.ts need (popularity deciles per raw item id, the raw ids of known users, the catalogue
 * size). Read from the version's `statistics.json`, which data validation writes next to the version's files
 * (activities/data-validation.ts) before anything trains on it; a version without one (validated before statistics
 * were stored) has them computed from its files, the same way, without writing them back (validation owns that file).
 * Parsed once per dataset version per process: versions are immutable.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { localDataset } from '../../lib/dataset/cache';
import { Manifest } from '../../lib/dataset/manifest';
import { datasetFileUri, manifestUri, parseDatasetUri } from '../../lib/dataset/ref';
import { computeStatistics, DatasetStatistics } from '../../lib/dataset/statistics';
import { popularityDeciles } from '../../lib/drift/summary';
import type { ObjectStore } from '../../lib/object-store';

export interface DriftReference {
  /** s3:// prefix of the dataset version (trailing slash). */
  datasetUri: string;
  datasetVersion: string;
  /** Raw item id → popularity decile (0: head .. 9: tail); items absent are "unknown" (bucket 10). */
  itemDeciles: Map<string, number>;
  /** Raw user ids of the dataset version. */
  knownUsers: Set<string>;
  /** Items in the catalogue: the denominator of coverage. */
  catalogueSize: number;
}

/** The reference of a dataset version from its statistics. */
export function referenceFromStatistics(
  datasetUri: string,
  datasetVersion: string,
  stats: Pick<DatasetStatistics, 'itemCounts' | 'userCounts'>,
): DriftReference {
  const itemDeciles = popularityDeciles(stats.itemCounts);
  return {
    datasetUri,
    datasetVersion,
    itemDeciles,
    knownUsers: new Set(Object.keys(stats.userCounts)),
    catalogueSize: itemDeciles.size,
  };
}

const parsed = new Map<string, Promise<DriftReference>>();

/** The reference of the dataset version at `datasetUri` (`s3://<bucket>/datasets/<name>/<version>/`). */
export async function loadDriftReference(
  store: ObjectStore,
  datasetUri: string,
  cacheDir: string,
): Promise<DriftReference> {
  const ref = parseDatasetUri(datasetUri);
  let p = parsed.get(ref.uri);
  if (!p) {
    p = (async () => referenceFromStatistics(ref.uri, ref.version, await statisticsOf(store, ref.uri, cacheDir)))();
    parsed.set(ref.uri, p);
    // A failed read (store down) must not stick: the next call tries again.
    p.catch(() => parsed.delete(ref.uri));
  }
  return await p;
}

async function statisticsOf(store: ObjectStore, uri: string, cacheDir: string): Promise<DatasetStatistics> {
  const statsUri = datasetFileUri(uri, 'statistics.json');
  const stored = await store.getJson(statsUri);
  if (stored !== undefined) {
    const ok = DatasetStatistics.safeParse(stored);
    if (ok.success) return ok.data;
  }
  const at = manifestUri(uri);
  if (!(await store.exists(at)))
    throw new Error(`drift reference: dataset version ${uri} has no manifest at ${at} (and no valid ${statsUri})`);
  const dir = await localDataset(at, store, cacheDir);
  const manifest = Manifest.parse(JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')));
  return computeStatistics(dir, manifest);
}
