/**
 * `recsys serve`: loads a registered model version (by alias, the champion by default) and serves recsys.v1 on
 * 127.0.0.1 (or another loopback address; anything else is refused) until SIGINT/SIGTERM, then drains in-flight calls
 * and ships its request log, within SHUTDOWN_BUDGET_MS (serving/shutdown-budget.ts). SIGHUP re-resolves the alias and
 * swaps to the version it now points at; if that version fails its checks, the current one keeps serving. Every
 * answered request and feedback event goes to the request log (serving/request-log.ts: on local disk as soon as a
 * chunk is sealed, shipped to the object store from there), filed under the server's `--environment` (`adhoc` by
 * default; the fleet's replicas say `staging` or `production`); Prometheus metrics are served on
 * http://127.0.0.1:<metrics-port>/metrics. recsys.v1.Admin on the same port loads further versions and splits traffic
 * between them (serving/admin-service.ts), for callers with the admin token (lib/admin-token.ts); SIGHUP goes back to
 * the single-model behaviour, all traffic to what the reference now resolves to. With --allow-faults, Admin/SetFault
 * injects latency, errors or random rankings into one version until its TTL runs out (serving/faults.ts), for
 * demonstrations. The HTTP/JSON API (serving/http/) is served on --http-port of the same host, over the same
 * RecommenderCore as gRPC: one model pool and traffic policy, one request log, one set of metrics. Both read a
 * user's recent history from the online store (Redis, --redis-url) when a request sends none, and record events in it.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { adminToken, adminTokenSource } from '../../lib/admin-token';
import type { LoadedModel } from '../../serving/loaded-model';
import { registryLoader } from '../../serving/model-loader';
import type { ModelRef } from '../../serving/model-ref';
import { DEFAULT_LOAD_TIMEOUT_MS, ModelPool } from '../../serving/model-pool';
import { HOST, isLoopbackHost, startServer } from '../../serving/server';
import { DEFAULT_HTTP_PORT, startHttpServer, type HttpServer } from '../../serving/http/server';
import type { OnlineStore } from '../../serving/online-store';
import { RecommenderCore } from '../../serving/recommender-core';
import { DRAIN_GRACE_MS, SHUTDOWN_BUDGET_MS } from '../../serving/shutdown-budget';
import { messageOf } from '../../serving/errors';
import { FaultTable } from '../../serving/faults';
import { connectOnlineStore } from '../../serving/redis-store';
import { config } from '../../lib/config';
import { objectStore } from '../../lib/object-store';
import { telemetryHooks } from '../../serving/log-hooks';
import { defaultLogPrefix, objectStoreUploader } from '../../serving/log-uploader';
import { ServingMetrics } from '../../serving/metrics';
import { ROUTER_ENV, routerSettingsFromEnv } from '../../serving/router-factory';
import { DEFAULT_METRICS_PORT, startMetricsServer } from '../../serving/metrics-server';
import { ADHOC_ENV } from '../../serving/log-layout';
import { DEFAULT_FLUSH_INTERVAL_MS, RequestLog, environmentNameProblem } from '../../serving/request-log';

interface ServeOptions {
  model: string;
  alias: string;
  version?: string;
  host: string;
  port: number;
  environment: string;
  loadTimeoutSeconds: number;
  metricsPort: number;
  /** Undefined: DEFAULT_HTTP_PORT, or 0 when --port is 0 (see the flag's help). */
  httpPort?: number;
  /** false with --no-http. */
  http: boolean;
  logPrefix?: string;
  logFlushSeconds: number;
  allowFaults: boolean;
  redisUrl?: string;
  /** false with --no-online-store. */
  onlineStore: boolean;
  onlineStoreTimeoutMs: number;
  /** A RouterConfig JSON for cascade versions (serving/router-config.ts); default $RECSYS_ROUTER, else built in. */
  router?: string;
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
    .option('--host <address>', 'loopback address to bind (127.0.0.0/8, ::1, localhost); nothing else', HOST)
    .option('--port <port>', 'port on the host (0 picks a free one)', (v) => Number(v), 50051)
    .option(
      '--environment <name>',
      'serving environment the request logs are filed under (env=<name>: staging, production, ...; [a-z0-9-]{1,32})',
      ADHOC_ENV,
    )
    .option(
      '--load-timeout-seconds <s>',
      'give up on loading a version (registry, download, checks) after this long',
      (v) => Number(v),
      DEFAULT_LOAD_TIMEOUT_MS / 1000,
    )
    .option(
      '--metrics-port <port>',
      'Prometheus /metrics on 127.0.0.1 (0 picks a free one)',
      (v) => Number(v),
      DEFAULT_METRICS_PORT,
    )
    .option(
      '--http-port <port>',
      `HTTP/JSON API on the same host (0 picks a free one; default ${DEFAULT_HTTP_PORT}, or a free one when --port is 0)`,
      (v) => Number(v),
    )
    .option('--no-http', 'serve gRPC only, no HTTP/JSON API')
    .option('--redis-url <url>', "the online feature store (default $REDIS_URL, the stack's redis://127.0.0.1:6379)")
    .option(
      '--online-store-timeout-ms <ms>',
      "give up on reading a user's history from the online store after this long (then: the dataset history)",
      (v) => Number(v),
      25,
    )
    .option('--no-online-store', 'no online store: history comes from the request or the dataset only')
    .option('--log-prefix <uri>', 'where request and feedback logs go (default s3://<bucket>/serving-logs)')
    .option(
      '--log-flush-seconds <s>',
      'seal buffered log records to disk and ship them at least this often (a kill -9 loses at most this long)',
      (v) => Number(v),
      DEFAULT_FLUSH_INTERVAL_MS / 1000,
    )
    .option(
      '--router <json>',
      'the adaptive router of cascade versions, e.g. \'{"budget":{"ratePerSecond":20,"burst":40},' +
        '"confidence":{"measure":"margin","threshold":0.1}}\' (default $RECSYS_ROUTER, else 50 expensive requests/s)',
    )
    .option(
      '--allow-faults',
      'accept recsys.v1.Admin/SetFault: inject latency, errors or random rankings into a version (demos, tests)',
      false,
    )
    .action(async (opts: ServeOptions) => {
      // Checked before anything loads: the Recommender and health services authenticate nobody.
      if (!isLoopbackHost(opts.host))
        throw new Error(
          `--host must be a loopback address (127.0.0.0/8, ::1, localhost), got ${JSON.stringify(opts.host)}: ` +
            'recsys serve is reachable from this machine only',
        );
      checkPort('--port', opts.port);
      const envProblem = environmentNameProblem('--environment', opts.environment);
      if (envProblem) throw new Error(envProblem);
      checkPort('--metrics-port', opts.metricsPort);
      // A server on a free gRPC port (tests, scripts, several at once) must not fight over the fixed HTTP default.
      const httpPort = opts.httpPort ?? (opts.port === 0 ? 0 : DEFAULT_HTTP_PORT);
      if (opts.http) checkPort('--http-port', httpPort);
      if (!(opts.logFlushSeconds > 0)) throw new Error(`--log-flush-seconds must be > 0, got ${opts.logFlushSeconds}`);
      if (!(opts.loadTimeoutSeconds > 0))
        throw new Error(`--load-timeout-seconds must be > 0, got ${opts.loadTimeoutSeconds}`);
      // Checked now (an error names the field and value); each cascade version builds its router from it.
      if (opts.router !== undefined) process.env[ROUTER_ENV] = opts.router;
      routerSettingsFromEnv();
      // Read (or generated) now, so that an unusable token file stops the start rather than every admin call.
      const token = adminToken();
      const ref: ModelRef =
        opts.version !== undefined
          ? { name: opts.model, version: opts.version }
          : { name: opts.model, alias: opts.alias };
      const slot = new ModelPool(registryLoader(), { loadTimeoutMs: opts.loadTimeoutSeconds * 1000 });
      const started = Date.now();
      const { model } = await slot.load(ref);
      console.log(`Loaded ${describe(model)} in ${Date.now() - started} ms`);

      const cfg = config();
      const logPrefix = opts.logPrefix ?? defaultLogPrefix(cfg.bucket);
      const metrics = new ServingMetrics({ processMetrics: true });
      const log = new RequestLog({
        uploader: objectStoreUploader(objectStore(), logPrefix),
        environment: opts.environment,
        spillDir: path.join(cfg.cacheDir, 'serving-log-spill'),
        flushIntervalMs: opts.logFlushSeconds * 1000,
        observer: metrics,
      });
      await log.start();
      const spillDir = path.join(cfg.cacheDir, 'serving-log-spill');
      const left = log.stats.chunksSpilled;
      console.log(
        `Request log spill directory ${spillDir}` + (left > 0 ? `: shipping ${left} chunks left by earlier runs` : ''),
      );
      const metricsServer = await startMetricsServer(metrics, opts.metricsPort);
      const faults = opts.allowFaults
        ? new FaultTable({ onExpired: (v) => console.log(`Fault on version ${v} expired (its TTL ran out)`) })
        : undefined;
      const hooks = telemetryHooks({ slot, log, metrics });
      // The online store never stops the start: Redis down means answers from the dataset history (and a metric)
      // until it is back; the client reconnects by itself.
      const redisUrl = opts.redisUrl ?? cfg.redisUrl;
      const store: OnlineStore | undefined = opts.onlineStore
        ? await connectOnlineStore({
            url: redisUrl,
            timeoutMs: opts.onlineStoreTimeoutMs,
            onConnectionChange: (state, detail) => console.log(`Online store ${redisUrl} ${state}: ${detail}`),
          })
        : undefined;
      // One core for both protocols: the same pool, traffic policy, hooks (request log, metrics), faults and store.
      const core = new RecommenderCore(slot, { hooks, faults, store });
      // The HTTP server is closed (drained) before the request log, so the log gets every record its calls appended.
      let http: HttpServer | undefined;
      const httpClose = { close: () => http?.close() ?? Promise.resolve() };
      const running = await startServer({
        slot,
        core,
        host: opts.host,
        port: opts.port,
        hooks,
        closeAfterDrain: [httpClose, log, metricsServer, ...(store ? [store] : [])],
        admin: true,
        adminToken: token,
        faults,
      });
      if (opts.http)
        try {
          http = await startHttpServer({ core, hooks, host: opts.host, port: httpPort });
        } catch (err) {
          await running.shutdown(0);
          throw err;
        }
      // Tests and infra/proc.sh wait for this line: keep its start.
      console.log(
        `Serving recsys.v1.Recommender on ${running.address} (also recsys.v1.Admin; health: SERVING; Ctrl-C stops)`,
      );
      console.log(
        `Metrics on ${metricsServer.url}; request logs to ${logPrefix}/ ` +
          `(environment ${log.environment}, server id ${log.serverId})`,
      );
      console.log(
        http
          ? `Serving HTTP/JSON on ${http.url} (POST /v1/recommend, /v1/events; GET /healthz, /readyz, /v1/openapi.json)`
          : 'HTTP/JSON API disabled (--no-http)',
      );
      console.log(
        store
          ? `Online store ${redisUrl}: histories of users who send none, events from Feedback and /v1/events`
          : 'Online store disabled (--no-online-store): history from the request or the dataset only',
      );
      console.log(`recsys.v1.Admin needs the admin token from ${adminTokenSource()}`);
      if (opts.allowFaults)
        console.log(
          'Fault injection allowed (recsys.v1.Admin/SetFault, each fault with a TTL): for demonstrations only',
        );

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
          // Drain and ship have budgets of their own; this only catches a step that hangs past both. Records are
          // on disk by then (the request log seals to its spill directory first), so exiting loses none of them.
          setTimeout(() => {
            console.error(`Shutdown took over ${SHUTDOWN_BUDGET_MS} ms; exiting`);
            process.exit(1);
          }, SHUTDOWN_BUDGET_MS).unref();
          // HTTP stops taking requests with gRPC; shutdown() awaits its drain again before closing the request log.
          void http?.close(DRAIN_GRACE_MS);
          void running.shutdown(DRAIN_GRACE_MS).then(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      const end = log.stats;
      console.log(
        `Request log: ${end.recordsShipped} records shipped` +
          (end.chunksSpilled > 0 ? `; ${end.chunksSpilled} chunks kept in the spill directory for the next start` : ''),
      );
      console.log('Stopped');
    });
}
