/**
 * What activities need from the outside world, passed to the factories (createActivities) rather than reached for
 * from module scope, so tests and benchmarks can give their own object store, MLflow client or configuration.
 */
import { config, type RecsysConfig } from '../lib/config';
import { MlflowClient } from '../lib/mlflow/client';
import { objectStore, type ObjectStore } from '../lib/object-store';

export interface ActivityDeps {
  config: RecsysConfig;
  store: ObjectStore;
  mlflow: MlflowClient;
}

/** The process-wide configuration, object store and MLflow client. */
export function defaultDeps(overrides: Partial<ActivityDeps> = {}): ActivityDeps {
  const cfg = overrides.config ?? config();
  return {
    config: cfg,
    store: overrides.store ?? objectStore(),
    mlflow: overrides.mlflow ?? new MlflowClient(cfg.mlflowUrl),
  };
}
