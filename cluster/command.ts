/**
 * Runs one external tool of the provisioning path (tofu, ansible-playbook, ssh, nodes.sh) as its own process group:
 * output lines go to a callback as they come (heartbeats show them), the last ones are kept for the error, and an
 * abort (a cancelled activity) stops the whole group, TERM then KILL.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly tail: string,
  ) {
    super(`${command} exited with code ${code}${tail ? `:\n${tail}` : ''}`);
  }
}

export interface CommandRun {
  cmd: string;
  args: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. */
  input?: string | Buffer;
  /**
   * Keep stdin open (and empty) for as long as the command runs: for `ssh node <wrapper>`, whose wrapper stops its
   * work when stdin closes, i.e. when this process (or the connection) is gone.
   */
  holdStdin?: boolean;
  signal?: AbortSignal;
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** How the command is named in errors (defaults to `cmd` and its first argument). */
  label?: string;
  /** Lines kept for the error message. */
  tailLines?: number;
  /** The signal an abort sends first (SIGTERM), and how long before SIGKILL follows (5 s). */
  stopSignal?: NodeJS.Signals;
  stopGraceMs?: number;
}

export interface CommandResult {
  stdout: string;
  tail: string;
}

const KILL_GRACE_MS = 5000;

export async function runCommand(run: CommandRun): Promise<CommandResult> {
  const label = run.label ?? [run.cmd, run.args[0]].filter(Boolean).join(' ');
  const child = spawn(run.cmd, [...run.args], {
    cwd: run.cwd,
    env: run.env ?? process.env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  const killGroup = (sig: NodeJS.Signals) => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    if (killTimer !== undefined) return;
    killGroup(run.stopSignal ?? 'SIGTERM');
    killTimer = setTimeout(() => killGroup('SIGKILL'), run.stopGraceMs ?? KILL_GRACE_MS);
  };
  run.signal?.addEventListener('abort', onAbort, { once: true });
  if (run.signal?.aborted) onAbort();

  const keep = run.tailLines ?? 30;
  const tail: string[] = [];
  const stdout: string[] = [];
  const follow = (stream: 'stdout' | 'stderr') => (line: string) => {
    if (stream === 'stdout') stdout.push(line);
    tail.push(line);
    if (tail.length > keep) tail.shift();
    run.onLine?.(line, stream);
  };
  createInterface({ input: child.stdout }).on('line', follow('stdout'));
  createInterface({ input: child.stderr }).on('line', follow('stderr'));
  child.stdin.on('error', () => undefined); // a command that exits without reading its input
  if (!run.holdStdin) child.stdin.end(run.input ?? '');

  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : null)));
  });
  clearTimeout(killTimer);
  run.signal?.removeEventListener('abort', onAbort);
  if (run.signal?.aborted) throw new CommandError(`${label} (cancelled)`, code, tail.join('\n'));
  if (code !== 0) throw new CommandError(label, code, tail.join('\n'));
  return { stdout: stdout.join('\n'), tail: tail.join('\n') };
}
