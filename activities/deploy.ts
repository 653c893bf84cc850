/**
 * Deployment activities: the serving environments (fleet/) as Temporal activities. Each converts the fleet's typed
 * errors into non-retryable failures of the same type (`ReplicaUnavailable` is the rollout's cue to roll back,
 * `ConfigError`, `Refused`, `PortInUse`, `NoEnvironment`) and heartbeats what it is doing. The fleet's operations are
 * idempotent, so a retry after a timeout does no harm.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import * as fleet from '../fleet/environment';
import { replica } from '../fleet/environments';
import { FleetError } from '../fleet/errors';
import { runLoadTest, type LoadTestInput } from '../fleet/load-test';
import type { ActivityDeps } from './deps';
import { activityHeartbeat, cancellationSignal, heartbeating } from './heartbeat';

/** Runs a fleet operation as an activity: its errors as typed, non-retryable failures. */
async function asActivity<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof FleetError) {
      if (err.type === 'Cancelled') throw new CancelledFailure(err.message);
      throw ApplicationFailure.nonRetryable(err.message, err.type, err.details);
    }
    throw err;
  }
}

export function deployActivities(deps: ActivityDeps) {
  return {
    /** Converges an environment to the requested replicas, versions and weights. */
    ensureEnvironment: (input: fleet.EnsureEnvironmentInput) => {
      let detail = `${input.env}: converging`;
      return heartbeating(
        () => detail,
        () =>
          asActivity(() =>
            fleet.ensureEnvironment(input, { progress: (d) => (detail = d), signal: cancellationSignal() }),
          ),
      );
    },
    setTrafficWeights: (input: { env: string; weights: Record<string, number>; salt?: string }) =>
      asActivity(() => fleet.setTrafficWeights(input, { progress: activityHeartbeat, signal: cancellationSignal() })),
    environmentState: (input: { env: string }) => asActivity(() => fleet.environmentState(input)),
    stopEnvironment: (input: { env: string }) =>
      asActivity(() => fleet.stopEnvironment(input, { progress: activityHeartbeat })),
    setFault: (input: { env: string; version: string; fault: fleet.FaultInput }) =>
      asActivity(() => fleet.setFault(input)),
    /** The environment and the gRPC port of its first replica: what names its lease on this machine. */
    environmentPort: (input: { env: string }) =>
      asActivity(() => {
        const env = fleet.envOf(input.env);
        return Promise.resolve({ env, port: replica(env, 0).grpcPort });
      }),
    scrapeVersionMetrics: (input: { env: string; versions?: string[] }) =>
      asActivity(() => fleet.scrapeVersionMetrics(input)),
    /** Replays the dataset's held-out interactions against the environment for `seconds`. */
    runLoadTest: (input: LoadTestInput) =>
      asActivity(() =>
        runLoadTest(input, {
          store: deps.store,
          cacheDir: deps.config.cacheDir,
          progress: activityHeartbeat,
          signal: cancellationSignal(),
        }),
      ),
  };
}
