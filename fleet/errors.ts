/**
 * Why a fleet operation could not be done, as a type the caller can act on: the deployment activities turn these
 * into non-retryable Temporal failures of the same type (a rollout rolls back on `ReplicaUnavailable`).
 */
export type FleetErrorType =
  | 'ConfigError'
  | 'ReplicaUnavailable'
  | 'Refused'
  | 'PortInUse'
  | 'NoEnvironment'
  /** The environment serves another model: a rollout that does not own it must not take it over. */
  | 'EnvironmentBusy'
  /** The operation was cancelled and stopped between replica calls. */
  | 'Cancelled';

export class FleetError extends Error {
  override name = 'FleetError';
  constructor(
    readonly type: FleetErrorType,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const configError = (message: string) => new FleetError('ConfigError', message);
