/**
 * The `staging` and `production` serving environments as `recsys serve` replicas on fixed loopback ports
 * (environments.ts), driven through recsys.v1.Admin. Every operation is idempotent, so a retry after a timeout does no
 * harm: ensureEnvironment converges to the requested state (starting only missing replicas, loading only missing
 * versions), and the others set or read state. A replica that is down (killed during a canary, say) fails the call
 * with FleetError `ReplicaUnavailable` naming it, after a few quick retries: the rollout's cue to roll back.
 */
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { sleep } from '../lib/time';
import { healthStatus } from '../serving/client';
import { messageOf } from '../serving/errors';
import type { FaultMessage } from '../serving/faults';
import { loadVersion, serverState, setServerFault, setTrafficPolicy, unloadVersion, type ServerState } from './admin';
import { checkEnv, checkReplicas, replica, replicaSlots, type EnvName, type Replica } from './environments';
import { configError, FleetError } from './errors';
import { alive, hasPidFile, readPid, spawnReplica, stopReplica, waitServing } from './replicas';
import {
  addScrape,
  emptyCounters,
  parsePrometheus,
  type MetricsSnapshot,
  type VersionCounters,
} from './version-metrics';

/** How long a replica may take from start to SERVING (download, checks, warm-up). */
export const START_TIMEOUT_MS = 120_000;
/** Quick retries of a replica call before it counts as unavailable. */
const RETRIES = 3;
const RETRY_DELAY_MS = 500;

/** Told what an operation is doing, as it goes (the activities heartbeat it). */
export type Progress = (detail: string) => void;
const quiet: Progress = () => undefined;

/** How an operation is watched: progress reports, and a signal that stops it between replica calls. */
export interface OperationContext {
  progress?: Progress;
  /** Aborted: the operation stops before its next replica call (a cancelled rollout's undo must not be overtaken). */
  signal?: AbortSignal;
}

function checkNotAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new FleetError('Cancelled', `cancelled before ${what}`);
}

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

const unavailable = (r: Replica, why: string) =>
  new FleetError('ReplicaUnavailable', `replica ${r.env}#${r.index} (${r.address}, ${r.name}) is unavailable: ${why}`, {
    env: r.env,
    index: r.index,
    address: r.address,
  });

/** The replicas an environment has: the slots with a pid file (a replica that died keeps its pid file). */
function members(env: EnvName): Replica[] {
  return replicaSlots(env).filter(hasPidFile);
}

function membersOrFail(env: EnvName): Replica[] {
  const rs = members(env);
  if (rs.length === 0)
    throw new FleetError('NoEnvironment', `environment ${env} has no replicas; run ensureEnvironment first`);
  return rs;
}

/** The environment's name, checked: a ConfigError naming the choices otherwise. */
export function envOf(env: string): EnvName {
  try {
    return checkEnv(env);
  } catch (err) {
    throw configError(messageOf(err));
  }
}

function stateOf(r: Replica, s: ServerState | undefined): ReplicaState {
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
          throw new FleetError('Refused', `${what} on ${r.env}#${r.index} (${r.address}): ${messageOf(err)}`);
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
  /**
   * Restart a replica that serves another model (default false: that is another model's environment, and a rollout
   * that does not own it must not take it over; it fails with `EnvironmentBusy`).
   */
  takeOver?: boolean;
}

function checkEnsure(input: EnsureEnvironmentInput): EnvName {
  const env = envOf(input.env);
  try {
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
  progress: Progress,
  signal: AbortSignal | undefined,
): Promise<ReplicaState> {
  const step = (what: string) => {
    checkNotAborted(signal, `${what} on ${r.name}`);
    progress(`${r.name}: ${what}`);
  };
  let pid = readPid(r);
  if (alive(pid)) {
    let held: string | undefined;
    try {
      await waitServing(r, pid!, 30_000, () => progress(`${r.name}: waiting for SERVING`));
      held = (await serverState(r.address)).versions[0]?.model_name;
    } catch (err) {
      step(`not healthy (${messageOf(err).split('\n')[0]}), restarting`);
      await stopReplica(r);
      pid = undefined;
    }
    if (pid !== undefined && held !== undefined && held !== input.model) {
      if (!input.takeOver)
        throw new FleetError(
          'EnvironmentBusy',
          `${r.env}#${r.index} (${r.address}) serves ${held}, not ${input.model}: this ${r.env} belongs to another ` +
            `model's rollouts, and one of ${input.model} must not restart it (stop it first, or use another port range)`,
          { env: r.env, index: r.index, model: held },
        );
      step(`serves ${held}, restarting for ${input.model}`);
      await stopReplica(r);
      pid = undefined;
    }
  } else pid = undefined;
  if (pid === undefined) {
    if ((await healthStatus(r.address, 1000)) !== 'UNREACHABLE')
      throw new FleetError(
        'PortInUse',
        `port ${r.address} of ${r.env}#${r.index} is taken by a server this environment did not start ` +
          '(e.g. `make demo`); stop it or set RECSYS_ENV_PORT_BASE to another range',
      );
    step(`starting ${input.model} v${input.versions[0]}`);
    pid = spawnReplica(r, { model: input.model, version: input.versions[0]!, flags: ['--allow-faults'] });
    await waitServing(r, pid, START_TIMEOUT_MS, () => progress(`${r.name}: starting (pid ${pid})`));
  }
  for (const version of input.versions) {
    step(`loading v${version}`);
    await onReplica(r, `LoadVersion ${version}`, () => loadVersion(r.address, input.model, version, START_TIMEOUT_MS));
  }
  step('setting the traffic policy');
  await onReplica(r, 'SetTrafficPolicy', () => setTrafficPolicy(r.address, input.weights, input.salt ?? ''));
  const s = await onReplica(r, 'GetState', () => serverState(r.address));
  for (const v of s.versions)
    if (!input.versions.includes(v.model_version)) {
      step(`unloading v${v.model_version}`);
      await onReplica(r, `UnloadVersion ${v.model_version}`, () => unloadVersion(r.address, v.model_version));
    }
  return stateOf(r, await onReplica(r, 'GetState', () => serverState(r.address)));
}

/**
 * Converges an environment: `replicas` replicas running (missing ones started, extra ones stopped), each holding
 * exactly `versions` under the policy `weights`. Calling it twice gives the same state and starts nothing.
 */
export async function ensureEnvironment(
  input: EnsureEnvironmentInput,
  { progress = quiet, signal }: OperationContext = {},
): Promise<EnvironmentState> {
  const env = checkEnsure(input);
  progress(`${env}: converging`);
  for (const extra of replicaSlots(env).slice(input.replicas))
    if (hasPidFile(extra)) {
      checkNotAborted(signal, `stopping ${extra.name}`);
      progress(`${extra.name}: stopping (scale down)`);
      await stopReplica(extra);
    }
  const replicas: ReplicaState[] = [];
  // One at a time: starting replicas loads models, which competes for the CPU with the ones already serving.
  for (let i = 0; i < input.replicas; i++) replicas.push(await ensureReplica(replica(env, i), input, progress, signal));
  return { env, replicas };
}

export interface SetTrafficWeightsResult {
  env: EnvName;
  /** As applied (percent, summing to 100; the same on every replica). */
  weights: Record<string, number>;
  replicas: { address: string; weights: Record<string, number> }[];
}

/** Sets the policy on every replica (the salt is kept). ReplicaUnavailable if one is down. */
export async function setTrafficWeights(
  input: { env: string; weights: Record<string, number>; salt?: string },
  { progress = quiet, signal }: OperationContext = {},
): Promise<SetTrafficWeightsResult> {
  const env = envOf(input.env);
  const replicas = membersOrFail(env);
  const out: SetTrafficWeightsResult['replicas'] = [];
  for (const r of replicas) {
    checkNotAborted(signal, `setting weights on ${r.name}`);
    progress(`${r.name}: setting weights`);
    const res = await onReplica(r, 'SetTrafficPolicy', () =>
      setTrafficPolicy(r.address, input.weights, input.salt ?? ''),
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
    let s: ServerState | undefined;
    if (alive(readPid(r)))
      try {
        s = await serverState(r.address);
      } catch {
        s = undefined;
      }
    replicas.push(stateOf(r, s));
  }
  return { env, replicas };
}

/** Stops every replica of the environment (drain and ship its log, SIGKILL after the grace period). Idempotent. */
export async function stopEnvironment(
  input: { env: string },
  { progress = quiet }: OperationContext = {},
): Promise<{ env: EnvName; stopped: string[] }> {
  const env = envOf(input.env);
  const stopped: string[] = [];
  for (const r of members(env)) {
    progress(`${r.name}: stopping`);
    if (await stopReplica(r)) stopped.push(r.name);
  }
  return { env, stopped };
}

export interface FaultInput {
  addedLatencyMs?: number;
  errorRate?: number;
  randomRecommendations?: boolean;
  /** The fault clears itself after this many seconds (0: the server's default, 10 minutes; at most an hour). */
  ttlSeconds?: number;
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
      setServerFault(r.address, input.version, fault, 10_000, input.fault.ttlSeconds ?? 0),
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

/**
 * Every replica of the environment answers its health check with SERVING (after the quick retries); ReplicaUnavailable
 * naming the first that does not. Canary analysis asks this: a replica that is down is a reason to roll back, even
 * though Prometheus still has what it served.
 */
export async function checkServing(input: { env: string }): Promise<{ env: EnvName; replicas: number }> {
  const env = envOf(input.env);
  const replicas = membersOrFail(env);
  for (const r of replicas)
    await onReplica(r, 'health check', async () => {
      const s = await healthStatus(r.address, 2000);
      if (s !== 'SERVING') throw new Error(`health ${s}`);
    });
  return { env, replicas: replicas.length };
}

/** The addresses of an environment's replicas, checking each serves `model` (ConfigError otherwise). */
export async function servingAddresses(env: EnvName, model: string): Promise<string[]> {
  const replicas = membersOrFail(env);
  for (const r of replicas) {
    const s = await onReplica(r, 'GetState', () => serverState(r.address));
    const held = s.versions[0]?.model_name;
    if (held !== model) throw configError(`${env}#${r.index} serves ${held ?? 'nothing'}, not ${model}`);
  }
  return replicas.map((r) => r.address);
}
