/**
 * A local copy of a dataset version for the Python steps. Versions are content-addressed and immutable, so a
 * complete local copy (marked by `.complete`) is reused across steps and retries.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { config } from '../lib/config';
import { Manifest } from '../lib/dataset/manifest';
import { objectStore } from '../lib/object-store';

export async function localDataset(ref: { name: string; version: string; manifestUri: string }): Promise<string> {
  const dir = path.join(config().cacheDir, 'datasets', ref.name, ref.version);
  const marker = path.join(dir, '.complete');
  try {
    await fs.access(marker);
    return dir;
  } catch {
    // not cached yet
  }
  const store = objectStore();
  const raw = await store.getJson(ref.manifestUri);
  if (raw === undefined) throw new Error(`dataset manifest ${ref.manifestUri} does not exist`);
  const manifest = Manifest.parse(raw);
  await fs.mkdir(dir, { recursive: true });
  for (const [file, { uri }] of Object.entries(manifest.files)) await store.downloadFile(uri, path.join(dir, file));
  await fs.writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  await fs.writeFile(marker, '');
  return dir;
}
