/**
 * Runs a Python entry point of `models/` (optionally under torchrun) and speaks its protocol: JSON lines on stdout,
 * `{"event":"progress"|"checkpoint"|...}` while it works, a final `{"event":"result"}` or `{"event":"error"}`.
 * The process gets its own process group so cancellation kills torchrun and every rank with it.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { config } from '../lib/config';

export const REPO_ROOT = path.resolve(__dirname, '..');

export interface PythonEvent {
  event: string;
  [key: string]: unknown;
}

export class PythonStepError extends Error {
  override readonly name = 'PythonStepError';
  constructor(
    readonly step: string,
    readonly errorType: string,
    message: string,
    readonly stderrTail: string,
  ) {
    super(`${step} failed: ${errorType}: ${message}`);
  }
}

export interface PythonRun {
  module: string;
  args: string[];
  /** Run under `torchrun --standalone --nproc_per_node=N`. */
  nprocPerNode?: number;
  onEvent?: (event: PythonEvent) => Promise<void> | void;
  signal?: AbortSignal;
  /** Called with the pid (= process group id) once started. */
  onStart?: (pid: number) => void;
  /** The Python interpreter (its venv's torchrun sits next to it); config().python by default. */
  python?: string;
  /**
   * Runs this instead of python or torchrun, speaking the same protocol (e.g. ssh to a cluster node whose wrapper
   * starts torchrun there): `module` and `args` are then only for messages.
   */
  command?: { cmd: string; args: string[] };
  /** Give the process a stdin pipe that stays open until it exits (a `command` that stops when its stdin closes). */
  holdStdin?: boolean;
}

const KILL_GRACE_MS = 5000;

export async function runPython(run: PythonRun): Promise<PythonEvent> {
  const python = run.python ?? config().python;
  const [cmd, args] = run.command
    ? [run.command.cmd, run.command.args]
    : run.nprocPerNode !== undefined
      ? [
          path.join(path.dirname(python), 'torchrun'),
          ['--standalone', `--nproc_per_node=${run.nprocPerNode}`, '-m', run.module, ...run.args],
        ]
      : [python, ['-m', run.module, ...run.args]];
  const child = spawn(cmd, args, {
    cwd: REPO_ROOT,
    detached: true,
    stdio: [run.holdStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PYTHONUNBUFFERED: '1',
      // models/jsonl.py exits (code 3) when this process is gone: no step outlives the worker that started it.
      RECSYS_SUPERVISOR_PID: String(process.pid),
      OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1',
      GLOO_SOCKET_IFNAME: process.env.GLOO_SOCKET_IFNAME ?? 'lo',
    },
  });
  const pid = child.pid!;
  child.stdin?.on('error', () => undefined); // held open, never written: only its closing matters
  run.onStart?.(pid);

  const killGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  let killTimer: NodeJS.Timeout | undefined;
  // Once only: a failed handler and a cancellation may both ask, and a second timer would outlive the process and
  // later SIGKILL whatever group reuses its id.
  const onAbort = () => {
    if (killTimer !== undefined) return;
    killGroup('SIGTERM');
    killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
  };
  run.signal?.addEventListener('abort', onAbort, { once: true });
  if (run.signal?.aborted) onAbort();

  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 60) stderr.shift();
  });

  let result: PythonEvent | undefined;
  let error: PythonEvent | undefined;
  // Events are handled one at a time, in order: a checkpoint upload finishes before the next event is seen.
  let handling: Promise<void> = Promise.resolve();
  // A handler that fails (an upload, an event that does not parse) ends the run: the process is stopped rather than
  // left working for a result that can no longer be used, and the failure is what runPython throws. Caught here so
  // it never becomes an unhandled rejection while the process is still running.
  let handlerFailed: { error: unknown } | undefined;
  const onHandlerError = (err: unknown) => {
    if (handlerFailed) return;
    handlerFailed = { error: err };
    onAbort();
  };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let event: PythonEvent;
    try {
      event = JSON.parse(line) as PythonEvent;
    } catch {
      event = undefined as unknown as PythonEvent;
    }
    // Anything but an object naming its event (a stray print, `null`, a number) is kept as output, not an event.
    if (typeof event !== 'object' || event === null || typeof event.event !== 'string') {
      stderr.push(`[stdout] ${line}`);
      return;
    }
    if (event.event === 'result') result = event;
    else if (event.event === 'error') error = event;
    handling = handling.then(() => (handlerFailed ? undefined : run.onEvent?.(event))).catch(onHandlerError);
  });

  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 : null)));
  });
  clearTimeout(killTimer);
  run.signal?.removeEventListener('abort', onAbort);
  // A torchrun rank may outlive the launcher for a moment; make sure nothing of this group survives.
  killGroup('SIGKILL');
  await handling;

  const tail = stderr.slice(-20).join('\n');
  if (run.signal?.aborted) throw new PythonStepError(run.module, 'Cancelled', 'cancelled', tail);
  if (handlerFailed) throw handlerFailed.error;
  if (code !== 0 || !result) {
    const type = typeof error?.type === 'string' ? error.type : `ExitCode${code}`;
    const message = typeof error?.message === 'string' ? error.message : `exited with code ${code}\n${tail}`;
    throw new PythonStepError(run.module, type, message, tail);
  }
  return result;
}
