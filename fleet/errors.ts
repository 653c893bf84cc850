/**
 * Why a fleet operation could not be done, as a type the caller can act on: the deployment activities turn these
 * into non-retryable Temporal failures of the same type (a rollout rolls back on `ReplicaUnavailable`).
 */
export type FleetErrorType = 'ConfigError' | 'ReplicaUnavailable' | 'Refused' | 'PortInUse' | 'NoEnvironment';

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
