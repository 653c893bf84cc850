/**
 * Deployment activities: the `staging` and `production` serving environments as `recsys serve` replicas on fixed
 * loopback ports (lib/environments.ts), driven through recsys.v1.Admin. Every activity is idempotent, so a retry after
 * a timeout does no harm: ensureEnvironment converges to the requested state (starting only missing replicas,
 * loading only missing versions), and the others set or read state. Activities that wait heartbeat. A replica that
 * is down (killed during a canary, say) fails the call with the non-retryable ApplicationFailure type
 * `ReplicaUnavailable` naming it, after a few quick retries inside the activity: the rollout's cue to roll back.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { checkEnv, checkReplicas, replica, replicaSlots, type EnvName, type Replica } from '../fleet/environments';
import { alive, hasPidFile, readPid, spawnReplica, stopReplica, waitServing } from '../fleet/replicas';
import { simulate, type SimulationResult } from '../fleet/simulate/run';
import { loadWorkload } from '../fleet/simulate/workload';
import { adminClient, healthStatus } from '../serving/client';
import { messageOf } from '../serving/errors';
import type { FaultMessage } from '../serving/faults';
import type { AdminClient } from '../serving/proto';
import type { GetStateResponse__Output } from '../proto/generated/recsys/v1/GetStateResponse';
import type { SetFaultResponse__Output } from '../proto/generated/recsys/v1/SetFaultResponse';
import type { SetTrafficPolicyResponse__Output } from '../proto/generated/recsys/v1/SetTrafficPolicyResponse';
import {
  addScrape,
  emptyCounters,
  parsePrometheus,
  windowStats,
  type MetricsSnapshot,
  type VersionCounters,
  type WindowStats,
} from '../fleet/version-metrics';
import { localDataset } from '../lib/dataset/cache';
import type { DatasetVersion } from '../lib/dataset/ref';
import { activityHeartbeat } from './heartbeat';

export { windowStats, type MetricsSnapshot, type VersionCounters, type WindowStats };

/** How long a replica may take from start to SERVING (download, checks, warm-up). */
const START_TIMEOUT_MS = 120_000;
/** Quick retries of a replica call before it counts as unavailable. */
const RETRIES = 3;
const RETRY_DELAY_MS = 500;

export interface ReplicaState {
  index: number;
  name: string;
  address: string;
  metricsUrl: string;
  pid: number | undefined;
  up: boolean;
  model: string | undefined;
  /** Loaded versions with their share of traffic (percent) and dataset version. */
  versions: { version: string; weight: number; datasetName: string; datasetVersion: string }[];
  /** The policy as applied (percent, summing to 100); {} when none. */
  weights: Record<string, number>;
  salt: string;
  faults: Record<string, FaultMessage>;
}

export interface EnvironmentState {
  env: EnvName;
  replicas: ReplicaState[];
}

const configError = (message: string) => ApplicationFailure.nonRetryable(message, 'ConfigError');

const unavailable = (r: Replica, why: string) =>
  ApplicationFailure.nonRetryable(
    `replica ${r.env}#${r.index} (${r.address}, ${r.name}) is unavailable: ${why}`,
    'ReplicaUnavailable',
    { env: r.env, index: r.index, address: r.address },
  );

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Heartbeats every 2 s while `work` runs (with the latest detail). */
async function heartbeating<T>(detail: () => unknown, work: () => Promise<T>): Promise<T> {
  activityHeartbeat(detail());
  const timer = setInterval(() => activityHeartbeat(detail()), 2000);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

type Callback<Res> = (err: ServiceError | null, res?: Res) => void;

/** One Admin call with a deadline, on a client opened for it. */
async function admin<Res>(
  address: string,
  timeoutMs: number,
  call: (c: AdminClient, opts: { deadline: number }, cb: Callback<Res>) => void,
): Promise<Res> {
  const c = adminClient(address);
  try {
    return await new Promise<Res>((resolve, reject) =>
      call(c, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
  } finally {
    c.close();
  }
}

const getState = (address: string) =>
  admin<GetStateResponse__Output>(address, 5000, (c, o, cb) => c.GetState({}, o, cb));

/** The replicas an environment has: the slots with a pid file (a replica that died keeps its pid file). */
function members(env: EnvName): Replica[] {
  return replicaSlots(env).filter(hasPidFile);
}

function stateOf(r: Replica, s: GetStateResponse__Output | undefined): ReplicaState {
  return {
    index: r.index,
    name: r.name,
    address: r.address,
    metricsUrl: r.metricsUrl,
    pid: readPid(r),
    up: s !== undefined,
    model: s?.versions[0]?.model_name,
    versions: (s?.versions ?? []).map((v) => ({
      version: v.model_version,
      weight: v.weight,
      datasetName: v.dataset_name,
      datasetVersion: v.dataset_version,
    })),
    weights: { ...(s?.policy?.weights ?? {}) },
    salt: s?.policy?.salt ?? '',
    faults: { ...(s?.faults ?? {}) },
  };
}

/** Runs `fn` up to RETRIES times, quickly; ReplicaUnavailable naming the replica after the last failure. */
async function onReplica<T>(r: Replica, what: string, fn: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 1; attempt <= RETRIES; attempt++) {
    if (!alive(readPid(r))) {
      last = new Error(`its process (pid ${readPid(r) ?? 'unknown'}) is not running`);
    } else {
      try {
        return await fn();
      } catch (err) {
        // A refusal (bad weights, unknown version) is an answer, not an outage: no retry, not "unavailable".
        const code = (err as Partial<ServiceError>).code;
        if (code === status.INVALID_ARGUMENT || code === status.FAILED_PRECONDITION)
          throw ApplicationFailure.nonRetryable(
            `${what} on ${r.env}#${r.index} (${r.address}): ${messageOf(err)}`,
            'Refused',
          );
        last = err;
      }
    }
    if (attempt < RETRIES) await sleep(RETRY_DELAY_MS);
  }
  throw unavailable(r, `${what} failed ${RETRIES} times: ${messageOf(last)}`);
}

export interface EnsureEnvironmentInput {
  env: string;
  replicas: number;
  /** Registered model name (MLflow). */
  model: string;
  /** Registry versions to hold; the first one is what a new replica starts with. */
  versions: string[];
  /** version -> weight (any scale; applied as percent). Every key must be in `versions`. */
  weights: Record<string, number>;
  /** Traffic salt; empty or absent keeps the replicas' current one. */
  salt?: string;
}

function checkEnsure(input: EnsureEnvironmentInput): EnvName {
  let env: EnvName;
  try {
    env = checkEnv(input.env);
    checkReplicas(input.replicas);
  } catch (err) {
    throw configError(messageOf(err));
  }
  if (!input.model) throw configError('model is required (a registered model name)');
  if (input.versions.length === 0) throw configError('versions must name at least one registry version');
  for (const v of input.versions)
    if (!/^\d+$/.test(v)) throw configError(`versions: ${JSON.stringify(v)} is not a registry version number`);
  let sum = 0;
  for (const [v, w] of Object.entries(input.weights)) {
    if (!input.versions.includes(v))
      throw configError(`weights: version ${v} is not in versions [${input.versions.join(', ')}]`);
    if (!Number.isInteger(w) || w < 0) throw configError(`weights: ${v} must be a non-negative integer, got ${w}`);
    sum += w;
  }
  if (sum <= 0) throw configError('weights must give some version a positive weight');
  return env;
}

/** Brings one replica to the state; returns it. */
async function ensureReplica(
  r: Replica,
  input: EnsureEnvironmentInput,
  progress: (s: string) => void,
): Promise<ReplicaState> {
  let pid = readPid(r);
  if (alive(pid)) {
    try {
      await waitServing(r, pid!, 30_000, () => progress(`${r.name}: waiting for SERVING`));
      const s = await getState(r.address);
      const held = s.versions[0]?.model_name;
      if (held !== undefined && held !== input.model) {
        progress(`${r.name}: serves ${held}, restarting for ${input.model}`);
        await stopReplica(r);
        pid = undefined;
      }
    } catch (err) {
      progress(`${r.name}: not healthy (${messageOf(err).split('\n')[0]}), restarting`);
      await stopReplica(r);
      pid = undefined;
    }
  } else pid = undefined;
  if (pid === undefined) {
    if ((await healthStatus(r.address, 1000)) !== 'UNREACHABLE')
      throw ApplicationFailure.nonRetryable(
        `port ${r.address} of ${r.env}#${r.index} is taken by a server this environment did not start ` +
          '(e.g. `make demo`); stop it or set RECSYS_ENV_PORT_BASE to another range',
        'PortInUse',
      );
    progress(`${r.name}: starting ${input.model} v${input.versions[0]}`);
    pid = spawnReplica(r, { model: input.model, version: input.versions[0]!, flags: ['--allow-faults'] });
    await waitServing(r, pid, START_TIMEOUT_MS, () => progress(`${r.name}: starting (pid ${pid})`));
  }
  for (const version of input.versions) {
    progress(`${r.name}: loading v${version}`);
    await onReplica(r, `LoadVersion ${version}`, () =>
      admin(r.address, START_TIMEOUT_MS, (c, o, cb) => c.LoadVersion({ model: input.model, version }, o, cb)),
    );
  }
  await onReplica(r, 'SetTrafficPolicy', () =>
    admin(r.address, 10_000, (c, o, cb) =>
      c.SetTrafficPolicy({ policy: { weights: input.weights, salt: input.salt ?? '' } }, o, cb),
    ),
  );
  const s = await onReplica(r, 'GetState', () => getState(r.address));
  for (const v of s.versions)
    if (!input.versions.includes(v.model_version))
      await onReplica(r, `UnloadVersion ${v.model_version}`, () =>
        admin(r.address, 30_000, (c, o, cb) => c.UnloadVersion({ model_version: v.model_version }, o, cb)),
      );
  return stateOf(r, await onReplica(r, 'GetState', () => getState(r.address)));
}

/**
 * Converges an environment: `replicas` replicas running (missing ones started, extra ones stopped), each holding
 * exactly `versions` under the policy `weights`. Calling it twice gives the same state and starts nothing.
 */
export async function ensureEnvironment(input: EnsureEnvironmentInput): Promise<EnvironmentState> {
  const env = checkEnsure(input);
  let detail = `${env}: converging`;
  return heartbeating(
    () => detail,
    async () => {
      const progress = (s: string) => (detail = s);
      for (const extra of replicaSlots(env).slice(input.replicas))
        if (hasPidFile(extra)) {
          progress(`${extra.name}: stopping (scale down)`);
          await stopReplica(extra);
        }
      const replicas: ReplicaState[] = [];
      // One at a time: starting replicas loads models, which competes for the CPU with the ones already serving.
      for (let i = 0; i < input.replicas; i++) replicas.push(await ensureReplica(replica(env, i), input, progress));
      return { env, replicas };
    },
  );
}

function envOf(env: string): EnvName {
  try {
    return checkEnv(env);
  } catch (err) {
    throw configError(messageOf(err));
  }
}

function membersOrFail(env: EnvName): Replica[] {
  const rs = members(env);
  if (rs.length === 0)
    throw ApplicationFailure.nonRetryable(
      `environment ${env} has no replicas; run ensureEnvironment first`,
      'NoEnvironment',
    );
  return rs;
}

export interface SetTrafficWeightsResult {
  env: EnvName;
  /** As applied (percent, summing to 100; the same on every replica). */
  weights: Record<string, number>;
  replicas: { address: string; weights: Record<string, number> }[];
}

/** Sets the policy on every replica (the salt is kept). ReplicaUnavailable if one is down. */
export async function setTrafficWeights(input: {
  env: string;
  weights: Record<string, number>;
  salt?: string;
}): Promise<SetTrafficWeightsResult> {
  const env = envOf(input.env);
  const replicas = membersOrFail(env);
  const out: SetTrafficWeightsResult['replicas'] = [];
  for (const r of replicas) {
    activityHeartbeat(`${r.name}: setting weights`);
    const res = await onReplica(r, 'SetTrafficPolicy', () =>
      admin<SetTrafficPolicyResponse__Output>(r.address, 10_000, (c, o, cb) =>
        c.SetTrafficPolicy({ policy: { weights: input.weights, salt: input.salt ?? '' } }, o, cb),
      ),
    );
    out.push({ address: r.address, weights: { ...(res.policy?.weights ?? {}) } });
  }
  return { env, weights: out[0]?.weights ?? {}, replicas: out };
}

/** Every replica the environment has, up or not (never fails for a down replica: up is false). */
export async function environmentState(input: { env: string }): Promise<EnvironmentState> {
  const env = envOf(input.env);
  const replicas: ReplicaState[] = [];
  for (const r of members(env)) {
    let s: GetStateResponse__Output | undefined;
    if (alive(readPid(r)))
      try {
        s = await getState(r.address);
      } catch {
        s = undefined;
      }
    replicas.push(stateOf(r, s));
  }
  return { env, replicas };
}

/** Stops every replica of the environment (drain, then SIGKILL after 15 s). Idempotent. */
export async function stopEnvironment(input: { env: string }): Promise<{ env: EnvName; stopped: string[] }> {
  const env = envOf(input.env);
  const stopped: string[] = [];
  for (const r of members(env)) {
    activityHeartbeat(`${r.name}: stopping`);
    if (await stopReplica(r)) stopped.push(r.name);
  }
  return { env, stopped };
}

export interface FaultInput {
  addedLatencyMs?: number;
  errorRate?: number;
  randomRecommendations?: boolean;
}

/** Injects (or, with an empty fault, clears) a fault into one version on every replica. */
export async function setFault(input: {
  env: string;
  version: string;
  fault: FaultInput;
}): Promise<{ env: EnvName; faults: Record<string, FaultMessage> }> {
  const env = envOf(input.env);
  const fault: FaultMessage = {
    added_latency_ms: input.fault.addedLatencyMs ?? 0,
    error_rate: input.fault.errorRate ?? 0,
    random_recommendations: input.fault.randomRecommendations ?? false,
  };
  let faults: Record<string, FaultMessage> = {};
  for (const r of membersOrFail(env)) {
    const res = await onReplica(r, 'SetFault', () =>
      admin<SetFaultResponse__Output>(r.address, 10_000, (c, o, cb) =>
        c.SetFault({ model_version: input.version, fault }, o, cb),
      ),
    );
    faults = { ...res.faults };
  }
  return { env, faults };
}

export interface VersionMetricsSnapshot extends MetricsSnapshot {
  env: EnvName;
  replicas: number;
}

async function scrape(r: Replica): Promise<string> {
  const res = await fetch(r.metricsUrl, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`GET ${r.metricsUrl}: HTTP ${res.status}`);
  return res.text();
}

/**
 * Scrapes every replica's /metrics and sums per version (all versions when `versions` is empty): cumulative counters
 * and latency buckets. Two snapshots make a window: windowStats(before, after). ReplicaUnavailable when one does
 * not answer.
 */
export async function scrapeVersionMetrics(input: {
  env: string;
  versions?: string[];
}): Promise<VersionMetricsSnapshot> {
  const env = envOf(input.env);
  const replicas = membersOrFail(env);
  const wanted = input.versions && input.versions.length > 0 ? input.versions : undefined;
  const versions: Record<string, VersionCounters> = {};
  for (const r of replicas)
    addScrape(versions, parsePrometheus(await onReplica(r, 'GET /metrics', () => scrape(r))), wanted);
  for (const v of wanted ?? []) versions[v] ??= emptyCounters();
  return { env, replicas: replicas.length, at: new Date().toISOString(), versions };
}

export interface LoadTestInput {
  env: string;
  /** The registered model the environment serves (checked against what it holds). */
  model: string;
  /** The dataset version whose held-out interactions are replayed. */
  dataset: Pick<DatasetVersion, 'name' | 'version' | 'manifestUri'>;
  qps: number;
  seconds: number;
  /** Replay only the first N test users. */
  users?: number;
}

export interface LoadTestResult {
  requests: number;
  errors: number;
  errorRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
  achievedQps: number;
  dropped: number;
  clicks: number;
  ctr: number;
  perVersion: SimulationResult['perVersion'];
}

/** Replays the dataset's held-out interactions against the environment for `seconds` (simulator: lib/simulate). */
export async function runLoadTest(input: LoadTestInput): Promise<LoadTestResult> {
  const env = envOf(input.env);
  if (!(input.seconds > 0 && input.seconds <= 3600))
    throw configError(`seconds must be in (0, 3600], got ${input.seconds}`);
  if (!(input.qps > 0 && input.qps <= 5000)) throw configError(`qps must be in (0, 5000], got ${input.qps}`);
  const replicas = membersOrFail(env);
  for (const r of replicas) {
    const s = await onReplica(r, 'GetState', () => getState(r.address));
    const held = s.versions[0]?.model_name;
    if (held !== input.model) throw configError(`${env}#${r.index} serves ${held ?? 'nothing'}, not ${input.model}`);
  }
  activityHeartbeat('loading the dataset');
  const users = await loadWorkload(await localDataset(input.dataset.manifestUri), { maxUsers: input.users });
  const r = await simulate({
    addresses: replicas.map((x) => x.address),
    users,
    qps: input.qps,
    seconds: input.seconds,
    onProgress: (p) => activityHeartbeat(p),
  });
  return {
    requests: r.requests,
    errors: r.errors,
    errorRate: r.errorRate,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    achievedQps: r.achievedQps,
    dropped: r.dropped,
    clicks: r.clicks,
    ctr: r.ctr,
    perVersion: r.perVersion,
  };
}
