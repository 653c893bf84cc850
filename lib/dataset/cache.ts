/**
 * A local copy of a dataset version for the Python steps, the serving tier and the simulator. Versions are
 * content-addressed and immutable, so a complete local copy (marked by `.complete`) is reused across steps and
 * retries.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { config } from '../config';
import { objectStore, type ObjectStore } from '../object-store';
import { Manifest } from './manifest';
import { parseDatasetUri } from './ref';

/** The local directory holding the version whose manifest is at `manifestUri` (downloaded on first use). */
export async function localDataset(
  manifestUri: string,
  store: ObjectStore = objectStore(),
  cacheDir: string = config().cacheDir,
): Promise<string> {
  const ref = parseDatasetUri(manifestUri.replace(/manifest\.json$/, ''));
  const dir = path.join(cacheDir, 'datasets', ref.name, ref.version);
  const marker = path.join(dir, '.complete');
  try {
    await fs.access(marker);
    return dir;
  } catch {
    // not cached yet
  }
  const raw = await store.getJson(manifestUri);
  if (raw === undefined) throw new Error(`dataset manifest ${manifestUri} does not exist`);
  const manifest = Manifest.parse(raw);
  await fs.mkdir(dir, { recursive: true });
  for (const [file, { uri }] of Object.entries(manifest.files)) await store.downloadFile(uri, path.join(dir, file));
  await fs.writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  await fs.writeFile(marker, '');
  return dir;
}
