/**
 * `recsys serve`: loads a registered model version (by alias, the champion by default) and serves recsys.v1 on
 * 127.0.0.1 until SIGINT/SIGTERM, then drains in-flight calls. SIGHUP re-resolves the alias and swaps to the version
 * it now points at; if that version fails its checks, the current one keeps serving. Every answered request and
 * feedback event goes to the request log (serving/request-log.ts, shipped to the object store and flushed on
 * shutdown); Prometheus metrics are served on http://127.0.0.1:<metrics-port>/metrics. recsys.v1.Admin on the same
 * port (loopback only) loads further versions and splits traffic between them (serving/admin-service.ts); SIGHUP goes
 * back to the single-model behaviour, all traffic to what the reference now resolves to. With --allow-faults,
 * Admin/SetFault injects latency, errors or random rankings into one version (serving/faults.ts), for demonstrations.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { LoadedModel } from '../../serving/loaded-model';
import { registryLoader } from '../../serving/model-loader';
import type { ModelRef } from '../../serving/model-ref';
import { ModelPool } from '../../serving/model-pool';
import { startServer } from '../../serving/server';
import { messageOf } from '../../serving/errors';
import { FaultTable } from '../../serving/faults';
import { config } from '../../lib/config';
import { objectStore } from '../../lib/object-store';
import { telemetryHooks } from '../../serving/log-hooks';
import { defaultLogPrefix, objectStoreUploader } from '../../serving/log-uploader';
import { ServingMetrics } from '../../serving/metrics';
import { DEFAULT_METRICS_PORT, startMetricsServer } from '../../serving/metrics-server';
import { RequestLog } from '../../serving/request-log';

interface ServeOptions {
  model: string;
  alias: string;
  version?: string;
  port: number;
  metricsPort: number;
  logPrefix?: string;
  logFlushSeconds: number;
  allowFaults: boolean;
}

function checkPort(flag: string, port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`${flag} must be an integer in [0, 65535], got ${port}`);
}

function describe(m: LoadedModel): string {
  const v = m.version;
  return (
    `${m.label} (aliases: ${v.aliases.join(', ') || 'none'}; dataset ${v.dataset.name}@${v.dataset.version}; ` +
    `${m.catalog.nItems} items, ${m.catalog.users.size} known users; top_k ${v.topK}, history_len ${v.historyLen})`
  );
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'serve a registered model over gRPC (recsys.v1.Recommender and Admin, health, reflection) on 127.0.0.1',
    )
    .requiredOption('--model <name>', 'registered model name, e.g. two-tower-ml-100k')
    .option('--alias <alias>', 'registry alias to serve', 'champion')
    .option('--version <n>', 'serve this version instead of the alias')
    .option('--port <port>', 'port on 127.0.0.1 (0 picks a free one)', (v) => Number(v), 50051)
    .option(
      '--metrics-port <port>',
      'Prometheus /metrics on 127.0.0.1 (0 picks a free one)',
      (v) => Number(v),
      DEFAULT_METRICS_PORT,
    )
    .option('--log-prefix <uri>', 'where request and feedback logs go (default s3://<bucket>/serving-logs)')
    .option('--log-flush-seconds <s>', 'ship buffered log records at least this often', (v) => Number(v), 10)
    .option(
      '--allow-faults',
      'accept recsys.v1.Admin/SetFault: inject latency, errors or random rankings into a version (demos, tests)',
      false,
    )
    .action(async (opts: ServeOptions) => {
      checkPort('--port', opts.port);
      checkPort('--metrics-port', opts.metricsPort);
      if (!(opts.logFlushSeconds > 0)) throw new Error(`--log-flush-seconds must be > 0, got ${opts.logFlushSeconds}`);
      const ref: ModelRef =
        opts.version !== undefined
          ? { name: opts.model, version: opts.version }
          : { name: opts.model, alias: opts.alias };
      const slot = new ModelPool(registryLoader());
      const started = Date.now();
      const { model } = await slot.load(ref);
      console.log(`Loaded ${describe(model)} in ${Date.now() - started} ms`);

      const cfg = config();
      const logPrefix = opts.logPrefix ?? defaultLogPrefix(cfg.bucket);
      const metrics = new ServingMetrics({ processMetrics: true });
      const log = new RequestLog({
        uploader: objectStoreUploader(objectStore(), logPrefix),
        spillDir: path.join(cfg.cacheDir, 'serving-log-spill'),
        flushIntervalMs: opts.logFlushSeconds * 1000,
        observer: metrics,
      });
      await log.start();
      const metricsServer = await startMetricsServer(metrics, opts.metricsPort);
      const running = await startServer({
        slot,
        port: opts.port,
        hooks: telemetryHooks({ slot, log, metrics }),
        closeAfterDrain: [log, metricsServer],
        admin: true,
        faults: opts.allowFaults ? new FaultTable() : undefined,
      });
      // Tests and infra/proc.sh wait for this line: keep its start.
      console.log(
        `Serving recsys.v1.Recommender on ${running.address} (also recsys.v1.Admin; health: SERVING; Ctrl-C stops)`,
      );
      console.log(`Metrics on ${metricsServer.url}; request logs to ${logPrefix}/ (server id ${log.serverId})`);
      if (opts.allowFaults) console.log('Fault injection allowed (recsys.v1.Admin/SetFault): for demonstrations only');

      process.on('SIGHUP', () => {
        console.log(`SIGHUP: reloading ${ref.version ?? `@${ref.alias}`}`);
        slot.load(ref).then(
          (r) =>
            console.log(
              r.swapped ? `Swapped ${r.previous} -> ${describe(r.model)}` : `${r.model.label} already serving`,
            ),
          (err: unknown) => console.error(`Reload failed, still serving ${slot.active?.label}: ${messageOf(err)}`),
        );
      });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          console.log(`${signal}: draining in-flight calls`);
          void running.shutdown().then(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      const left = log.stats;
      console.log(
        `Request log: ${left.recordsShipped} records shipped` +
          (left.chunksSpilled > 0
            ? `; ${left.chunksSpilled} chunks kept in the spill directory for the next start`
            : ''),
      );
      console.log('Stopped');
    });
}
