/** `recsys serve` as a child process, as cli/bin/recsys runs it (node with tsx's loader), with its output watched. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

export interface ServeProcess {
  child: ChildProcess;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Everything printed so far (stdout and stderr). */
  output: () => string;
  /** Waits (up to 60 s) until the output matches; fails with the output if the process exits first. */
  waitFor: (re: RegExp) => Promise<RegExpExecArray>;
}

/** `env` replaces the process's environment (default: this one's). */
export function spawnServe(args: string[], env?: NodeJS.ProcessEnv): ServeProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'serve', ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const waitFor = async (re: RegExp): Promise<RegExpExecArray> => {
    for (let i = 0; i < 600; i++) {
      const m = re.exec(output);
      if (m) return m;
      if (child.exitCode !== null || child.signalCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no ${String(re)} in the output of recsys serve:\n${output}`);
  };
  return { child, exited, output: () => output, waitFor };
}
