/** The declared bin runs through a symlink, as `npx recsys` and a global install run it. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

it('cli/bin/recsys finds the checkout when run through a symlink', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recsys-bin-'));
  try {
    const link = path.join(dir, 'recsys');
    fs.symlinkSync(path.resolve(__dirname, '..', '..', '..', 'cli', 'bin', 'recsys'), link);
    const out = execFileSync(link, ['--help'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    expect(out).toContain('Usage: recsys');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
