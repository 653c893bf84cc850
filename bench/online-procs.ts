/**
 * Child processes of bench/online-path.ts: its own Redis, the servers under test (bench/serving-server.ts' `online`
 * and `http-empty`) and the load generator (bench/online-load.ts). Like bench/serving-procs.ts, every child exits
 * when its stdin closes, so none outlives the benchmark even if the benchmark is killed; Redis is wrapped in a shell
 * that stops it then.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { messageOf } from '../serving/errors';
import type { OnlineLoadSpec } from './online-load';
import type { ServerStats } from './online-servers';
import { runLoadProcess, tsNode } from './serving-procs';
import type { BenchGraph } from './serving-fixture';
import type { LoadResult } from './serving-load';

/** Stops a child through its stdin (it exits by itself then), killing it if it takes longer than `graceMs`. */
async function stopChild(child: ChildProcess, exited: Promise<void>, graceMs: number): Promise<void> {
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

const exitOf = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

export interface BenchServerProcess {
  /** host:port of its gRPC server (for http-empty: unset). */
  grpcAddress: string;
  /** http://host:port of its HTTP server, if it has one. */
  httpUrl: string;
  /** The online server's counters, read between cells (bench/online-servers.ts). */
  stats(): Promise<ServerStats>;
  stop(): Promise<void>;
}

/** Starts bench/serving-server.ts `kind`; resolves once it printed its ports. */
async function startBenchServer(kind: 'online' | 'http-empty', args: string[]): Promise<BenchServerProcess> {
  const [cmd, argv] = tsNode('serving-server.ts', [kind, ...args]);
  const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
  const exited = exitOf(child);
  // Every line the server prints answers the oldest question: first "ready?", then each `stats`.
  const waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  const nextLine = (what: string, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${kind} server: ${what}: no answer in ${timeoutMs} ms`)),
        timeoutMs,
      );
      waiting.push({
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.resolve(line));
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${kind} server exited with ${code}`));
  });
  try {
    const { port, httpPort } = JSON.parse(await nextLine('ready', 60_000)) as { port: number; httpPort?: number };
    const httpAt = kind === 'http-empty' ? port : httpPort;
    return {
      grpcAddress: kind === 'http-empty' ? '' : `127.0.0.1:${port}`,
      httpUrl: httpAt === undefined ? '' : `http://127.0.0.1:${httpAt}`,
      async stats() {
        const line = nextLine('stats', 10_000);
        child.stdin.write('stats\n');
        return JSON.parse(await line) as ServerStats;
      },
      stop: () => stopChild(child, exited, 5000),
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** The serving tier over `graph`: gRPC + HTTP on one RecommenderCore, with the online store at `redisUrl`. */
export const startOnlineServer = (graph: BenchGraph, redisUrl: string) =>
  startBenchServer('online', [JSON.stringify(graph), redisUrl]);

/** express 5 with the API's JSON parser and a handler that answers `{}`. */
export const startEmptyHttpServer = () => startBenchServer('http-empty', []);

/** Runs one bounded load in its own process and returns what it measured. */
export function runOnlineLoad(spec: OnlineLoadSpec): Promise<LoadResult> {
  return runLoadProcess('online-load.ts', spec, `load generator (${spec.kind})`);
}

/** A free loopback TCP port (the OS picks it; the tiny window before Redis binds it is acceptable for a benchmark). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisProcess {
  url: string;
  stop(): Promise<void>;
}

/** Answers once Redis at `url` replies to PING, or rejects after `timeoutMs`. */
async function waitForRedis(url: string, exited: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until && !exited()) {
    const client = createClient({ url, socket: { connectTimeout: 500, reconnectStrategy: false } });
    client.on('error', () => {}); // a refused connection is expected until Redis listens; connect() rejects with it
    try {
      await client.connect();
      await client.ping();
      client.destroy();
      return;
    } catch (err) {
      last = messageOf(err);
      if (client.isOpen) client.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`redis-server at ${url} did not answer in ${timeoutMs} ms${last ? ` (${last})` : ''}`);
}

/**
 * Starts the benchmark's own Redis (Debian's redis-server, as `make setup` installs it) on a free loopback port with
 * no persistence, in a scratch directory: the stack's Redis and its data are never touched.
 */
export async function startRedis(): Promise<RedisProcess> {
  const port = await freePort();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-bench-redis-'));
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir];
  // The shell stops Redis when its stdin closes: when we stop it, or when the benchmark dies.
  const child = spawn('sh', ['-c', 'redis-server "$@" & r=$!; cat >/dev/null; kill $r; wait $r', 'sh', ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-2000)));
  const exited = exitOf(child);
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `redis://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child, exited, 10_000);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForRedis(url, () => gone, 10_000);
  } catch (err) {
    await stop();
    throw new Error(`${messageOf(err)}; its output:\n${log}`);
  }
  return { url, stop };
}
