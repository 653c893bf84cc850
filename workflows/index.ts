/**
 * The workflow bundle entry: every workflow the workers run, and their queries, updates and types for clients and
 * tests (tests/workflows import workflow-side things from here only). Note that a worker registers every exported
 * function as a workflow type, so export helper functions sparingly.
 */
export {
  continuousTraining,
  progressQuery,
  type ContinuousTrainingInput,
  type ContinuousTrainingResult,
  type StepName,
  type StepState,
  type TrainingOutcome,
  type TrainingProgress,
} from './continuous-training';
export {
  rollout,
  rolloutStateQuery,
  approveUpdate,
  rejectUpdate,
  abortUpdate,
  rolloutWorkflowId,
  type Decision,
  type RolloutEvent,
  type RolloutInput,
  type RolloutOutcome,
  type RolloutPhase,
  type RolloutResult,
  type RolloutState,
} from './rollout';
