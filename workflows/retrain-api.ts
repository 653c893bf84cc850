/**
 * Retraining's public surface: one retrain of a model at a time, whoever asks. Drift monitors, schedules and people
 * all start `continuousTraining` under the same per-model id (`retrain-<model>`), so a retrain already running absorbs
 * every other request for that model (Temporal refuses a second run of a running id). Scheduled starts go through
 * `scheduledRetrain`, because a schedule appends `-<time>` to its workflow ids and could not share the id itself.
 * Deterministic and free of I/O, so clients and workflows share it.
 */
import type { ContinuousTrainingInput } from './training-api';

/** What a retrain may change from the champion's own training input; everything else is inherited from it. */
export type RetrainOverrides = NonNullable<ContinuousTrainingInput['retrain']>;

/** Why a retrain runs: lineage recorded on the MLflow run and model version. */
export type RetrainCause = NonNullable<ContinuousTrainingInput['cause']>;

export type RetrainTrigger = NonNullable<ContinuousTrainingInput['trigger']>;

/** The one id every retrain of `model` runs under. */
export const retrainWorkflowId = (model: string): string => `retrain-${model}`;

/** The schedule that retrains `model`, and the id prefix of the workflows it starts (the server appends a time). */
export const retrainScheduleId = (model: string): string => `retrain-schedule-${model}`;
export const scheduledRetrainWorkflowId = (model: string): string => `scheduled-retrain-${model}`;

export interface ScheduledRetrainInput {
  model: string;
  overrides?: RetrainOverrides;
}

export interface ScheduledRetrainResult {
  /** `trained`: this run's retrain ran to its end; `absorbed`: a retrain of the model was already running. */
  outcome: 'trained' | 'absorbed';
  retrainWorkflowId: string;
  /** The training outcome when this run started it. */
  training?: { outcome: string; modelVersion?: string; datasetVersion?: string };
}
