/**
 * Where the platform's servers and tools are, from the environment, with the defaults of the local stack
 * (infra/env.sh sets the same variables). Read once per process. How to reach and authenticate to Temporal, S3 and
 * MLflow in production is parsed by one module each (temporal-profile.ts, s3-settings.ts, mlflow/auth.ts).
 */
import os from 'node:os';
import path from 'node:path';
import { loadMlflowAuth, type MlflowAuth } from './mlflow/auth';
import { loadS3Settings, type S3StaticCredentials } from './s3-settings';
import { loadTemporalProfile, type TemporalProfile } from './temporal-profile';

export interface RecsysConfig {
  temporalAddress: string;
  temporalNamespace: string;
  /** The whole Temporal profile (address, namespace, API key, TLS): connect with lib/temporal-connection.ts. */
  temporal: TemporalProfile;
  temporalUiUrl: string;
  taskQueue: string;
  /** A custom (path-style) endpoint; undefined when the AWS SDK resolves it (RECSYS_S3_ENDPOINT=aws). */
  s3Endpoint: string | undefined;
  /** undefined: the AWS SDK's own region resolution. */
  s3Region: string | undefined;
  s3ForcePathStyle: boolean;
  /** Static keys; undefined: the AWS SDK's default credential chain. */
  s3Credentials: S3StaticCredentials | undefined;
  /** Bucket for datasets, checkpoints and model artefacts. */
  bucket: string;
  mlflowUrl: string;
  mlflowAuth: MlflowAuth;
  /** The online feature store (Redis), e.g. redis://127.0.0.1:6379. */
  redisUrl: string;
  /** Prometheus' HTTP API (canary analysis runs PromQL against it). */
  prometheusUrl: string;
  python: string;
  /** Local cache of downloaded objects, keyed by content. */
  cacheDir: string;
  /** Per-run state of provisioned training clusters (tofu state, inventory, keys): ~/.cache/recsys/clusters. */
  clustersDir: string;
  /** Deadlines of S3 requests (ms): to connect, for a request until its response starts, and of silence mid-transfer. */
  s3ConnectTimeoutMs: number;
  s3RequestTimeoutMs: number;
  s3IdleTimeoutMs: number;
  /** Deadline of one MLflow REST call (ms), and of one artefact upload through MLflow's proxy. */
  mlflowTimeoutMs: number;
  mlflowUploadTimeoutMs: number;
}

export function loadConfig(environment: NodeJS.ProcessEnv = process.env): RecsysConfig {
  const env = (name: string, fallback: string): string => {
    const value = environment[name];
    return value === undefined || value === '' ? fallback : value;
  };
  const envMs = (name: string, fallback: number): number => msFrom(name, environment[name], fallback);
  const cache = env('RECSYS_CACHE', path.join(os.homedir(), '.cache', 'recsys'));
  const temporal = loadTemporalProfile(environment);
  const s3 = loadS3Settings(environment);
  return {
    temporalAddress: temporal.address,
    temporalNamespace: temporal.namespace,
    temporal,
    temporalUiUrl: env('TEMPORAL_UI_URL', `http://127.0.0.1:${env('TEMPORAL_UI_PORT', '8233')}`),
    taskQueue: env('RECSYS_TASK_QUEUE', 'recsys-training'),
    s3Endpoint: s3.endpoint,
    s3Region: s3.region,
    s3ForcePathStyle: s3.forcePathStyle,
    s3Credentials: s3.credentials,
    bucket: env('RECSYS_BUCKET', 'recsys'),
    mlflowUrl: env('MLFLOW_TRACKING_URI', 'http://127.0.0.1:5000'),
    mlflowAuth: loadMlflowAuth(environment),
    redisUrl: env('REDIS_URL', `redis://127.0.0.1:${env('REDIS_PORT', '6379')}`),
    prometheusUrl: env('PROMETHEUS_URL', `http://127.0.0.1:${env('PROMETHEUS_PORT', '9090')}`),
    python: env('RECSYS_PYTHON', path.join(cache, 'venv', 'bin', 'python')),
    cacheDir: path.join(cache, 'objects'),
    clustersDir: path.join(cache, 'clusters'),
    s3ConnectTimeoutMs: envMs('RECSYS_S3_CONNECT_TIMEOUT_MS', 5_000),
    // Covers sending an upload's body too, so it is generous; a hung server is caught by the idle timeout first.
    s3RequestTimeoutMs: envMs('RECSYS_S3_REQUEST_TIMEOUT_MS', 15 * 60_000),
    s3IdleTimeoutMs: envMs('RECSYS_S3_IDLE_TIMEOUT_MS', 60_000),
    mlflowTimeoutMs: envMs('RECSYS_MLFLOW_TIMEOUT_MS', 30_000),
    mlflowUploadTimeoutMs: envMs('RECSYS_MLFLOW_UPLOAD_TIMEOUT_MS', 10 * 60_000),
  };
}

/** A duration in ms from the environment; anything but a positive integer is an error naming the variable. */
function msFrom(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0)
    throw new Error(
      `environment variable ${name} must be a positive integer of milliseconds, got ${JSON.stringify(raw)}`,
    );
  return value;
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
