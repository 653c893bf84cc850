/**
 * Every activity the workers register, built by one factory from its dependencies (Temporal's
 * activities-dependency-injection pattern): the worker calls createActivities(), tests and benchmarks pass their own
 * object store, MLflow client or configuration. Workflows import the `Activities` type only.
 */
import { dataValidationActivities } from './data-validation';
import { deployActivities } from './deploy';
import { driftActivities } from './drift';
import { environmentLeaseActivities } from './environment-lease';
import { defaultDeps, type ActivityDeps } from './deps';
import { etlActivities } from './etl';
import { evaluationActivities } from './evaluation';
import { exportActivities } from './export';
import { featureActivities } from './features';
import { gateActivities } from './gates';
import { ChameleonLeases } from '../cluster/chameleon-leases';
import { provisionActivities } from './provision';
import { quantizationActivities } from './quantization';
import { registryActivities } from './registry';
import { retrainActivities } from './retrain';
import { rolloutAnalysisActivities } from './rollout-analysis';
import { trainingActivities } from './training';

export function createActivities(deps: ActivityDeps = defaultDeps()) {
  return {
    ...etlActivities(deps),
    ...dataValidationActivities(deps),
    ...trainingActivities(deps),
    ...evaluationActivities(deps),
    ...exportActivities(deps),
    ...quantizationActivities(deps),
    ...gateActivities(),
    ...registryActivities(deps),
    ...deployActivities(deps),
    ...environmentLeaseActivities(),
    ...rolloutAnalysisActivities(deps),
    ...retrainActivities(deps),
    ...driftActivities(deps),
    ...featureActivities(deps),
    // Chameleon's leases from clouds.yaml on this controller (never from workflow payloads).
    ...provisionActivities(deps, (spec) => new ChameleonLeases(spec.chameleon!, spec.maxLeaseHours)),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export { defaultDeps, type ActivityDeps };
