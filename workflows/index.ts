/**
 * The workflow bundle entry: every workflow the workers run. A worker registers every exported function as a workflow
 * type, so the only functions exported here are workflows; their public surfaces (queries, updates, ids, types) are
 * workflows/rollout-api.ts, training-api.ts, drift-api.ts and retrain-api.ts, whose definitions and types are re-exported below for
 * tests/workflows, which import workflow-side things from this entry only (id helpers, being functions, are not).
 */
export { continuousTraining } from './continuous-training';
export { rollout } from './rollout';
export { environmentLease } from './environment-lease';
export { driftMonitor } from './drift-monitor';
export { scheduledRetrain } from './retrain';
export { provisionTraining } from './provision-training';
export { clusterSweeper } from './cluster-sweeper';
export {
  clusterStateQuery,
  type ClusterPhase,
  type ClusterState,
  type ProvisionTrainingInput,
  type ProvisionTrainingResult,
} from './provision-api';
export {
  configureUpdate,
  driftStatusQuery,
  pauseSignal,
  rebaselineSignal,
  resumeSignal,
  type DriftMonitorInput,
  type DriftMonitorState,
  type DriftMonitorView,
  type WindowRecord,
} from './drift-api';
export type { ScheduledRetrainInput, ScheduledRetrainResult } from './retrain-api';
export {
  progressQuery,
  type ContinuousTrainingInput,
  type ContinuousTrainingResult,
  type StepName,
  type StepState,
  type TrainingOutcome,
  type TrainingProgress,
} from './training-api';
export {
  abortUpdate,
  approveUpdate,
  rejectUpdate,
  rolloutStateQuery,
  type Decision,
  type RolloutEvent,
  type RolloutInput,
  type RolloutOutcome,
  type RolloutPhase,
  type RolloutResult,
  type RolloutState,
} from './rollout-api';
