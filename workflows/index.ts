/**
 * The workflow bundle entry: every workflow the workers run. A worker registers every exported function as a workflow
 * type, so the only functions exported here are workflows; their public surfaces (queries, updates, ids, types) are
 * workflows/rollout-api.ts and workflows/training-api.ts, whose definitions and types are re-exported below for
 * tests/workflows, which import workflow-side things from this entry only (id helpers, being functions, are not).
 */
export { continuousTraining } from './continuous-training';
export { rollout } from './rollout';
export { environmentLease } from './environment-lease';
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
