/** Shared bits of the benchmarks: medians, the machine they ran on, synthetic data in the object store. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { config } from '../lib/config';
import { writeSyntheticLog, type SyntheticOptions } from '../tests/data/synthetic';
import { objectStore } from '../lib/object-store';

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`;
}

/** Writes an ML-1M-like synthetic log and uploads it; returns its s3:// URI. */
export async function syntheticSource(name: string, options: Partial<SyntheticOptions> = {}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-'));
  try {
    const file = path.join(dir, 'interactions.csv');
    await writeSyntheticLog(file, options);
    const uri = `s3://${config().bucket}/raw/${name}/interactions.csv`;
    await objectStore().putFile(uri, file);
    return uri;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export const benchName = (prefix: string) => `${prefix}-${Date.now().toString(36)}`;
