/** The code version recorded on every run: RECSYS_CODE_VERSION, else the git commit of the checkout. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

let cached: string | undefined;
export function codeVersion(): string {
  if (cached !== undefined) return cached;
  cached = process.env.RECSYS_CODE_VERSION ?? '';
  if (!cached) {
    try {
      const cwd = path.resolve(__dirname, '..');
      const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
      const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' });
      cached = dirty.trim() ? `${sha}-dirty` : sha;
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}

/** Hash of models/requirements.lock: the exact Python environment the model code ran in. */
export function pythonLockSha256(): string {
  const lock = path.resolve(__dirname, '..', 'models', 'requirements.lock');
  return createHash('sha256').update(readFileSync(lock)).digest('hex');
}
