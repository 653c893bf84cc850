/**
 * Prometheus' file-based service discovery for the serving replicas: one JSON file per replica slot under
 * `<stack dir>/prometheus/targets/`, written when the fleet starts a replica and removed when it stops one
 * (replicas.ts), which the stack's Prometheus reads (infra/stack.sh: `file_sd_configs`). The labels `env` and `replica`
 * say which environment a series belongs to; the metrics themselves carry model and version. A replica that dies keeps
 * its file (as it keeps its pid file), so Prometheus records it as down (`up == 0`) rather than forgetting it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { stackDirOf } from '../lib/config';
import type { Replica } from './environments';

export const targetsDir = (): string => path.join(stackDirOf(), 'prometheus', 'targets');

const fileOf = (r: Replica) => path.join(targetsDir(), `${r.name}.json`);

/** The file_sd document of one replica. */
export function targetGroup(r: Replica): { targets: string[]; labels: Record<string, string> }[] {
  return [{ targets: [`127.0.0.1:${r.metricsPort}`], labels: { env: r.env, replica: String(r.index) } }];
}

/** Written whole (temporary file, then rename): Prometheus never reads half a file. Idempotent. */
export function addScrapeTarget(r: Replica): void {
  fs.mkdirSync(targetsDir(), { recursive: true });
  const tmp = `${fileOf(r)}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(targetGroup(r), null, 2)}\n`);
  fs.renameSync(tmp, fileOf(r));
}

export function removeScrapeTarget(r: Replica): void {
  fs.rmSync(fileOf(r), { force: true });
}
