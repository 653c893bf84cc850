/**
 * A bounded load test of an environment: the dataset version's held-out users replayed against its replicas by the
 * simulator, summarised as the staging gate reads it (errors, latency, click-through).
 */
import { localDataset } from '../lib/dataset/cache';
import type { DatasetRef } from '../lib/dataset/ref';
import { manifestUri } from '../lib/dataset/ref';
import type { ObjectStore } from '../lib/object-store';
import { envOf, servingAddresses } from './environment';
import { configError, FleetError } from './errors';
import { simulate, type SimulationProgress, type SimulationResult } from './simulate/run';
import { loadWorkload } from './simulate/workload';
import { withTicker } from '../lib/time';

export interface LoadTestInput {
  env: string;
  /** The registered model the environment serves (checked against what it holds). */
  model: string;
  /** The dataset version whose held-out interactions are replayed. */
  dataset: DatasetRef;
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

/** Replays the dataset's held-out interactions against the environment for `seconds`. */
export async function runLoadTest(
  input: LoadTestInput,
  deps: {
    store: ObjectStore;
    cacheDir: string;
    progress: (p: SimulationProgress | string) => void;
    /** Aborted: the load stops at once (the calls in flight are abandoned). */
    signal?: AbortSignal;
  },
): Promise<LoadTestResult> {
  const env = envOf(input.env);
  if (!(input.seconds > 0 && input.seconds <= 3600))
    throw configError(`seconds must be in (0, 3600], got ${input.seconds}`);
  if (!(input.qps > 0 && input.qps <= 5000)) throw configError(`qps must be in (0, 5000], got ${input.qps}`);
  const addresses = await servingAddresses(env, input.model);
  // Downloading and reading the dataset can take a while: say so while it happens, not only before.
  const loading = () => deps.progress('loading the dataset');
  loading();
  const users = await withTicker(2000, loading, async () =>
    loadWorkload(await localDataset(manifestUri(input.dataset.uri), deps.store, deps.cacheDir), {
      maxUsers: input.users,
    }),
  );
  const r = await simulate({
    addresses,
    users,
    qps: input.qps,
    seconds: input.seconds,
    onProgress: (p) => deps.progress(p),
    signal: deps.signal,
  });
  if (deps.signal?.aborted) throw new FleetError('Cancelled', 'load test cancelled: its figures cover part of the run');
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
