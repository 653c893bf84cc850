/**
 * Child processes of the serving benchmark: the servers under test and the load generator. Each server prints
 * {"port":N} when ready and exits when its stdin closes, so none outlives the benchmark even if it is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { LoadResult, LoadSpec } from './serving-load';

const BENCH = __dirname;
/** TypeScript children run under the same node with tsx's loader: one process each, no tsx wrapper in between. */
export const tsNode = (file: string, args: string[]): [string, string[]] => [
  process.execPath,
  ['--import', 'tsx', path.join(BENCH, file), ...args],
];

export interface ServerProcess {
  address: string;
  stop(): Promise<void>;
}

function firstLine(child: ChildProcess, what: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not ready after ${timeoutMs} ms`)), timeoutMs);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what}: exited with ${code} before it was ready`));
    });
  });
}

async function startServer(what: string, cmd: string, args: string[]): Promise<ServerProcess> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const { port } = JSON.parse(await firstLine(child, what, 60_000)) as { port: number };
    return {
      address: `127.0.0.1:${port}`,
      async stop() {
        child.stdin.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

export function startTsServer(kind: 'ours' | 'empty', graphJson = ''): Promise<ServerProcess> {
  const [cmd, args] = tsNode('serving-server.ts', [kind, graphJson]);
  return startServer(`${kind} server`, cmd, args);
}

export function startPythonPeer(python: string, onnx: string, nItems: number): Promise<ServerProcess> {
  const script = path.join(BENCH, 'python-peer', 'server.py');
  return startServer('python peer', python, [script, '--onnx', onnx, '--n-items', String(nItems)]);
}

/** Runs one bounded load in its own process and returns what it measured. */
export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return runLoadProcess('serving-load.ts', spec, 'load generator');
}

/** A load generator script of bench/ run with `spec` as its argument; resolves with the JSON line it prints. */
export function runLoadProcess(
  script: string,
  spec: { warmupS: number; seconds: number },
  label: string,
): Promise<LoadResult> {
  const [cmd, args] = tsNode(script, [JSON.stringify(spec)]);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // The generator stops by itself after warmupS + seconds; this only guards against a hang.
    const timer = setTimeout(() => child.kill('SIGKILL'), (spec.warmupS + spec.seconds + 30) * 1000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out) as LoadResult);
      else reject(new Error(`${label} exited with ${code}`));
    });
  });
}
