/**
 * One serving replica as a process: `recsys serve` started detached in its own process group (so a worker restart
 * does not take it down and `infra/proc.sh stop <name>` can signal the group), its pid in a pid file and its output in
 * a log file (lib/environments.ts' layout), and a gRPC health check to tell when it is up. A replica serves with
 * `--environment <its env>`, so its request logs are filed under env=staging or env=production and never mix.
 * Stopping is SIGTERM to the group (the server drains and flushes its request log), SIGKILL after a grace period.
 * Starting a replica also tells Prometheus to scrape it, and stopping it to stop (scrape-targets.ts).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { healthStatus } from '../serving/client';
import { SHUTDOWN_BUDGET_MS } from '../serving/shutdown-budget';
import type { Replica } from './environments';
import { addScrapeTarget, removeScrapeTarget } from './scrape-targets';
import { sleep } from '../lib/time';

const ROOT = path.resolve(__dirname, '..');

export function readPid(r: Replica): number | undefined {
  try {
    const pid = Number(fs.readFileSync(r.pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const hasPidFile = (r: Replica): boolean => fs.existsSync(r.pidFile);

/** The last lines of the replica's log, for error messages. */
export function logTail(r: Replica, lines = 15): string {
  try {
    return fs.readFileSync(r.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface StartOptions {
  model: string;
  version: string;
  /** Extra `recsys serve` flags. */
  flags?: string[];
}

/** Starts the process (does not wait for it): returns its pid, which is also its process group id. */
export function spawnReplica(r: Replica, o: StartOptions): number {
  fs.mkdirSync(path.dirname(r.pidFile), { recursive: true });
  fs.mkdirSync(path.dirname(r.logFile), { recursive: true });
  const log = fs.openSync(r.logFile, 'a');
  try {
    fs.writeSync(log, `\n--- ${new Date().toISOString()} starting ${r.name}: ${o.model} v${o.version}\n`);
    const loader = pathToFileURL(path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    const args = [
      ...['--import', loader, path.join(ROOT, 'cli', 'main.ts'), 'serve'],
      ...['--model', o.model, '--version', o.version],
      ...['--port', String(r.grpcPort), '--metrics-port', String(r.metricsPort), '--http-port', String(r.httpPort)],
      ...['--environment', r.env],
      ...(o.flags ?? []),
    ];
    const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio: ['ignore', log, log] });
    if (child.pid === undefined) throw new Error(`cannot start ${r.name}: spawn failed`);
    fs.writeFileSync(r.pidFile, `${child.pid}\n`);
    child.unref();
    addScrapeTarget(r);
    return child.pid;
  } finally {
    fs.closeSync(log);
  }
}

/**
 * Waits until the replica answers SERVING; calls `tick` about every second (heartbeats). Fails with the log's tail
 * when the process exits first or the time runs out.
 */
export async function waitServing(r: Replica, pid: number, timeoutMs: number, tick?: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await healthStatus(r.address, 1000)) === 'SERVING') return;
    if (!alive(pid)) throw new Error(`${r.name} (pid ${pid}) exited before serving; log ${r.logFile}:\n${logTail(r)}`);
    if (Date.now() > deadline)
      throw new Error(`${r.name} (pid ${pid}) is not SERVING after ${timeoutMs} ms; log ${r.logFile}:\n${logTail(r)}`);
    tick?.();
    await sleep(500);
  }
}

/** SIGTERM to the group, SIGKILL after `graceMs`; removes the pid file. True when a process was running. */
// SIGTERM lets a replica drain, ship its request log and exit within SHUTDOWN_BUDGET_MS; a few seconds more for the
// process to end before SIGKILL.
const STOP_GRACE_MS = SHUTDOWN_BUDGET_MS + 5_000;

export async function stopReplica(r: Replica, graceMs = STOP_GRACE_MS): Promise<boolean> {
  const pid = readPid(r);
  const running = alive(pid);
  if (pid !== undefined && running) {
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(-pid, s);
      } catch {
        // already gone
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    signal('SIGKILL');
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  }
  fs.rmSync(r.pidFile, { force: true });
  removeScrapeTarget(r);
  return running;
}
