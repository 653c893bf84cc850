/** One models.train run on this machine (1 process, or torchrun --standalone with N), for the training benchmarks. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runPython } from '../activities/python-process';

/** Trains once on `dataDir` with `config`; returns the run's samples/s. */
export async function samplesPerSec(dataDir: string, nproc: number, config: object): Promise<number> {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-train-'));
  try {
    const result = await runPython({
      module: 'models.train',
      args: ['--data-dir', dataDir, '--out-dir', out, '--config-json', JSON.stringify(config)],
      nprocPerNode: nproc > 1 ? nproc : undefined,
    });
    return result.samples_per_sec as number;
  } finally {
    await fs.rm(out, { recursive: true, force: true });
  }
}
