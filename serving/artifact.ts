/**
 * The ONNX file of a version on local disk, verified against the checksum its registry tag recorded at export time.
 * Files are cached by that checksum and only ever renamed into the cache after verification, so a cached file was
 * good when written; it is re-hashed anyway on every load (tens of milliseconds) because a model that serves wrong
 * answers is worse than a slow load. An aborted `signal` (the model pool's load deadline) ends the wait for a download
 * at once; the download itself is left to finish or fail, and its temporary file is removed when it does.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { sha256File } from '../lib/files';
import type { ObjectStore } from '../lib/object-store';
import { ModelLoadError, messageOf } from './errors';

export async function fetchVerifiedOnnx(
  model: string,
  uri: string,
  sha256: string,
  opts: { store: ObjectStore; cacheDir: string; signal?: AbortSignal },
  /** The cached file's extension: `.onnx` for a graph, `.json` for a cascade manifest. */
  ext = '.onnx',
): Promise<string> {
  const file = path.join(opts.cacheDir, 'onnx', `${sha256}${ext}`);
  try {
    if ((await sha256File(file)) === sha256) return file;
    await fs.rm(file, { force: true }); // corrupted on disk: fetch it again
  } catch {
    // not cached yet
  }
  const tmp = `${file}.${process.pid}.${Date.now()}.download`;
  try {
    try {
      await untilAborted(opts.store.downloadFile(uri, tmp), opts.signal, () => fs.rm(tmp, { force: true }));
    } catch (err) {
      throw new ModelLoadError(model, 'download', `${uri}: ${messageOf(err)}`, { cause: err });
    }
    const actual = await sha256File(tmp);
    if (actual !== sha256)
      throw new ModelLoadError(
        model,
        'checksum',
        `sha256 of ${uri} is ${actual}, but the registry tag recsys.onnx.sha256 says ${sha256}`,
      );
    await fs.rename(tmp, file);
    return file;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/**
 * `work`, or a rejection with the signal's reason as soon as it is aborted; `cleanup` runs once an abandoned `work`
 * settles (it may still be writing its file when the caller gives up).
 */
function untilAborted(
  work: Promise<void>,
  signal: AbortSignal | undefined,
  cleanup: () => Promise<void>,
): Promise<void> {
  if (!signal) return work;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      void work.then(cleanup, cleanup);
      reject(signal.reason as Error);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener('abort', onAbort!));
}
