/**
 * Where the platform's servers and tools are, from the environment, with the defaults of the local stack
 * (infra/env.sh sets the same variables). Read once per process.
 */
import os from 'node:os';
import path from 'node:path';

export interface RecsysConfig {
  temporalAddress: string;
  temporalNamespace: string;
  temporalUiUrl: string;
  taskQueue: string;
  s3Endpoint: string;
  s3Region: string;
  s3AccessKeyId: string;
  s3SecretAccessKey: string;
  /** Bucket for datasets, checkpoints and model artefacts. */
  bucket: string;
  mlflowUrl: string;
  /** The online feature store (Redis), e.g. redis://127.0.0.1:6379. */
  redisUrl: string;
  /** Prometheus' HTTP API (canary analysis runs PromQL against it). */
  prometheusUrl: string;
  python: string;
  /** Local cache of downloaded objects, keyed by content. */
  cacheDir: string;
  /** Deadlines of S3 requests (ms): to connect, for a request until its response starts, and of silence mid-transfer. */
  s3ConnectTimeoutMs: number;
  s3RequestTimeoutMs: number;
  s3IdleTimeoutMs: number;
  /** Deadline of one MLflow REST call (ms), and of one artefact upload through MLflow's proxy. */
  mlflowTimeoutMs: number;
  mlflowUploadTimeoutMs: number;
}

function env(name: string, fallback: string): string {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

/** A duration in ms from the environment; anything but a positive integer is an error naming the variable. */
function envMs(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0)
    throw new Error(
      `environment variable ${name} must be a positive integer of milliseconds, got ${JSON.stringify(raw)}`,
    );
  return value;
}

export function loadConfig(): RecsysConfig {
  const cache = env('RECSYS_CACHE', path.join(os.homedir(), '.cache', 'recsys'));
  return {
    temporalAddress: env('TEMPORAL_ADDRESS', '127.0.0.1:7233'),
    temporalNamespace: env('TEMPORAL_NAMESPACE', 'default'),
    temporalUiUrl: env('TEMPORAL_UI_URL', `http://127.0.0.1:${env('TEMPORAL_UI_PORT', '8233')}`),
    taskQueue: env('RECSYS_TASK_QUEUE', 'recsys-training'),
    s3Endpoint: env('RECSYS_S3_ENDPOINT', 'http://127.0.0.1:7070'),
    s3Region: env('AWS_REGION', 'us-east-1'),
    s3AccessKeyId: env('AWS_ACCESS_KEY_ID', 'recsys'),
    s3SecretAccessKey: env('AWS_SECRET_ACCESS_KEY', 'recsys-local-secret'),
    bucket: env('RECSYS_BUCKET', 'recsys'),
    mlflowUrl: env('MLFLOW_TRACKING_URI', 'http://127.0.0.1:5000'),
    redisUrl: env('REDIS_URL', `redis://127.0.0.1:${env('REDIS_PORT', '6379')}`),
    prometheusUrl: env('PROMETHEUS_URL', `http://127.0.0.1:${env('PROMETHEUS_PORT', '9090')}`),
    python: env('RECSYS_PYTHON', path.join(cache, 'venv', 'bin', 'python')),
    cacheDir: path.join(cache, 'objects'),
    s3ConnectTimeoutMs: envMs('RECSYS_S3_CONNECT_TIMEOUT_MS', 5_000),
    // Covers sending an upload's body too, so it is generous; a hung server is caught by the idle timeout first.
    s3RequestTimeoutMs: envMs('RECSYS_S3_REQUEST_TIMEOUT_MS', 15 * 60_000),
    s3IdleTimeoutMs: envMs('RECSYS_S3_IDLE_TIMEOUT_MS', 60_000),
    mlflowTimeoutMs: envMs('RECSYS_MLFLOW_TIMEOUT_MS', 30_000),
    mlflowUploadTimeoutMs: envMs('RECSYS_MLFLOW_UPLOAD_TIMEOUT_MS', 10 * 60_000),
  };
}

/** $RECSYS_STACK_DIR (infra/env.sh): the local stack's data, pid files and logs; default ~/.cache/recsys/stack. */
export function stackDirOf(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RECSYS_STACK_DIR) return env.RECSYS_STACK_DIR;
  return path.join(env.RECSYS_CACHE || path.join(os.homedir(), '.cache', 'recsys'), 'stack');
}

let cached: RecsysConfig | undefined;
/** The process-wide configuration. */
export function config(): RecsysConfig {
  cached ??= loadConfig();
  return cached;
}
