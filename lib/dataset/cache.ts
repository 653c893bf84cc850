/**
 * A local copy of a dataset version for the Python steps, the serving tier and the simulator. Versions are
 * content-addressed and immutable, so a complete local copy (marked by `.complete`) is reused across steps and
 * retries.
 *
 * The manifest is input, not trusted code: its file names must be plain names that stay under the version's
 * directory, and every file is checked against the manifest's sha256 before it takes its final name. A file appears
 * under its final name whole and verified or not at all (unique temporary name, then rename), so processes that fill
 * the same version at once only ever replace a verified file with an identical one, and `.complete` comes last.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { config } from '../config';
import { sha256File } from '../files';
import { objectStore, type ObjectStore } from '../object-store';
import { Manifest } from './manifest';
import { checkDatasetFileName, DatasetRefError, parseDatasetUri } from './ref';

const exists = (file: string) =>
  fs.access(file).then(
    () => true,
    () => false,
  );

/** The local path of a manifest's file, refused when the name is not a plain file name under `dir`. */
function localPath(dir: string, file: string, manifestUri: string): string {
  try {
    checkDatasetFileName(file);
  } catch (err) {
    throw new DatasetRefError(`dataset manifest ${manifestUri}: ${(err as Error).message}`);
  }
  if (file === 'manifest.json')
    throw new DatasetRefError(`dataset manifest ${manifestUri}: file name "manifest.json" is the manifest's own`);
  const target = path.resolve(dir, file);
  // The name check already rules out escapes; this is the invariant the cache relies on, checked where it matters.
  if (path.dirname(target) !== path.resolve(dir))
    throw new DatasetRefError(`dataset manifest ${manifestUri}: file name ${JSON.stringify(file)} leaves ${dir}`);
  return target;
}

/** Downloads one file under a unique temporary name, checks its sha256, and only then gives it its final name. */
async function fetchVerified(
  store: ObjectStore,
  what: string,
  uri: string,
  target: string,
  sha256: string,
): Promise<void> {
  const want = sha256.toLowerCase();
  // Another process (or an earlier attempt) may have finished this file already.
  if ((await exists(target)) && (await sha256File(target)) === want) return;
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.download`);
  try {
    await store.downloadFile(uri, tmp);
    const got = await sha256File(tmp);
    if (got !== want)
      throw new Error(`${what}: ${uri} has sha256 ${got}, but the manifest says ${want}; the copy is not used`);
    await fs.rename(tmp, target);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/** The local directory holding the version whose manifest is at `manifestUri` (downloaded on first use). */
export async function localDataset(
  manifestUri: string,
  store: ObjectStore = objectStore(),
  cacheDir: string = config().cacheDir,
): Promise<string> {
  const ref = parseDatasetUri(manifestUri.replace(/manifest\.json$/, ''));
  const dir = path.join(cacheDir, 'datasets', ref.name, ref.version);
  const marker = path.join(dir, '.complete');
  if (await exists(marker)) return dir;
  const raw = await store.getJson(manifestUri);
  if (raw === undefined) throw new Error(`dataset manifest ${manifestUri} does not exist`);
  const manifest = Manifest.parse(raw);
  // Every name is checked before anything is written.
  const files = Object.entries(manifest.files).map(([file, entry]) => ({
    file,
    target: localPath(dir, file, manifestUri),
    ...entry,
  }));
  await fs.mkdir(dir, { recursive: true });
  for (const f of files)
    await fetchVerified(store, `dataset ${ref.name}@${ref.version} file ${f.file}`, f.uri, f.target, f.sha256);
  const manifestTmp = path.join(dir, `.manifest.json.${randomBytes(6).toString('hex')}`);
  await fs.writeFile(manifestTmp, JSON.stringify(manifest, null, 2));
  await fs.rename(manifestTmp, path.join(dir, 'manifest.json'));
  await fs.writeFile(marker, '');
  return dir;
}
