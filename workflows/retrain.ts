/**
 * Starting retrains, one per model at a time. `requestRetrain` starts `continuousTraining` (no data given: planned
 * from the champion's recipe plus the served feedback) as an abandoned child under `retrain-<model>`; when a retrain
 * of the model is already running, Temporal refuses the start and the request is absorbed by it. `scheduledRetrain`
 * is what a Temporal Schedule runs: it asks for a retrain and waits for it, so the schedule's overlap policy sees a
 * running retrain as its own running action, and a failed training fails the action (pause-on-failure); a gate
 * rejection is an outcome, not a failure.
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ParentClosePolicy,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import { RecsysModel, RecsysTrigger } from '../lib/search-attributes';
import { continuousTraining } from './continuous-training';
import {
  retrainWorkflowId,
  type RetrainCause,
  type RetrainOverrides,
  type RetrainTrigger,
  type ScheduledRetrainInput,
  type ScheduledRetrainResult,
} from './retrain-api';

export interface RetrainRequest {
  model: string;
  trigger: RetrainTrigger;
  cause?: RetrainCause;
  overrides?: RetrainOverrides;
}

export type RetrainStart =
  | { started: true; workflowId: string; handle: ChildWorkflowHandle<typeof continuousTraining> }
  | { started: false; workflowId: string };

/** Starts the model's retrain, or finds one running (then nothing new starts). */
export async function requestRetrain(req: RetrainRequest): Promise<RetrainStart> {
  const workflowId = retrainWorkflowId(req.model);
  try {
    const handle = await startChild(continuousTraining, {
      workflowId,
      args: [{ model: req.model, trigger: req.trigger, cause: req.cause, retrain: req.overrides }],
      // The training (and the rollout it starts) must outlive a monitor that continues as new or a deleted schedule.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `Retrain of ${req.model} (${req.trigger})${req.cause?.summary ? `: ${req.cause.summary}` : ''}`,
      typedSearchAttributes: [
        { key: RecsysModel, value: req.model },
        { key: RecsysTrigger, value: req.trigger },
      ],
    });
    return { started: true, workflowId, handle };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { started: false, workflowId };
    throw err;
  }
}

export async function scheduledRetrain(input: ScheduledRetrainInput): Promise<ScheduledRetrainResult> {
  upsertSearchAttributes([
    { key: RecsysModel, value: input.model },
    { key: RecsysTrigger, value: 'schedule' },
  ]);
  const me = workflowInfo().workflowId;
  const start = await requestRetrain({
    model: input.model,
    trigger: 'schedule',
    overrides: input.overrides,
    cause: { requestedBy: me, summary: `scheduled run ${me}` },
  });
  if (!start.started) return { outcome: 'absorbed', retrainWorkflowId: start.workflowId };
  const result = await start.handle.result();
  return {
    outcome: 'trained',
    retrainWorkflowId: start.workflowId,
    training: {
      outcome: result.outcome,
      modelVersion: result.registered.version,
      datasetVersion: result.dataset.version,
    },
  };
}
