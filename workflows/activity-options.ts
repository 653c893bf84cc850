/**
 * The named option sets the workflows proxy activities with (timeouts, retries, heartbeats), one per kind of step, so
 * each step's failure handling is stated once and read in one place. Non-retryable error types are business outcomes
 * or bad input: retrying them would give the same answer.
 */
import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';
import { controlTaskQueue } from '../lib/task-queues';

/** The options on the control queue of the workflow's own queue (a rollback never waits behind a training). */
export const onControlQueue = (options: ActivityOptions, workflowTaskQueue: string): ActivityOptions => ({
  ...options,
  taskQueue: controlTaskQueue(workflowTaskQueue),
});

export const etlOptions: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['DataValidationError', 'ConfigError'] },
  summary: 'ETL: validate raw logs, write a content-addressed dataset version',
};

export const validationOptions: ActivityOptions = {
  startToCloseTimeout: '20 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['ConfigError'] },
  summary: 'Data validation: statistics and schema vs the previous version',
};

export const trainOptions: ActivityOptions = {
  startToCloseTimeout: '6 hours',
  // torchrun reports progress every second and the activity heartbeats at least every 5 s: a silent 30 s means the
  // worker is gone, and the retry resumes from the last checkpoint on another worker.
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', maximumAttempts: 5 },
  // A cancelled workflow closes only after the activity has stopped torchrun, never with training still running.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  summary: 'Train with torchrun (DDP), checkpoint every epoch',
};

export const evaluateOptions: ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
  summary: 'Full-ranking evaluation with slices and bootstrap CIs vs popularity and the champion',
};

export const exportOptions: ActivityOptions = {
  // An HNSW index at a million items takes ~6 min (inner-product graph) and, when that one fails its check, ~30 min
  // more (angular graph) on 2 cores (bench/retrieval.ts); the heartbeat, not this, catches a lost worker.
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['OnnxParityError'] },
  summary: 'Export ONNX (user tower + item embeddings + TopK), check parity',
};

export const quantizeOptions: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3 },
  summary: 'Quantize int8, evaluate and time it against fp32',
};

export const gateOptions: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['GateConfigError', 'GateInputError'] },
  summary: 'Promotion gates: decide on the evaluation',
};

/** Registration in MLflow: a run with its artefacts and a model version (idempotent, keyed by the training). */
export const registerOptions: ActivityOptions = {
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['RegistryLineageError'] },
  summary: 'MLflow registry: run, artefacts, model version',
};

/** Quick registry reads and writes: lineage, the champion alias, version tags (idempotent). */
export const registryOptions: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['RegistryLineageError', 'ChampionMovedError'] },
  summary: 'MLflow registry',
};

export const deployOptions: ActivityOptions = {
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 3, nonRetryableErrorTypes: ['ReplicaUnavailable'] },
  // A cancelled deploy stops between replica calls and reports back before the workflow goes on, so the rollback's
  // own deploy is never overtaken by a late weight change of the cancelled one.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  summary: 'Serving deployment (admin service)',
};

export const analysisOptions: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumAttempts: 3, nonRetryableErrorTypes: ['ReplicaUnavailable'] },
  summary: 'Canary analysis: PromQL over the window in Prometheus, canary compared with baseline',
};

export const loadTestOptions: ActivityOptions = {
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 2 },
  // Staging is stopped only once the load against it has stopped.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  summary: 'Staging load test (simulated traffic)',
};

/** Who holds an environment's lease (a Temporal describe call). */
export const leaseOptions: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3 },
  summary: 'Environment lease: who holds it',
};

/** Planning a retrain: reads the registry and exports served feedback (one window of logs; minutes at most). */
export const planOptions: ActivityOptions = {
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['NoChampion', 'NoRecipe'] },
};

/** Drift windows: summarising reads one window's log chunks; evaluating reads small summaries. */
export const driftWindowOptions: ActivityOptions = {
  startToCloseTimeout: '20 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '2 seconds', maximumInterval: '1 minute', maximumAttempts: 10 },
};

/** Lease, tofu apply, ansible: minutes each; a retry finds what its earlier attempt made (idempotent by cluster id). */
export const provisionOptions: ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '5 seconds', maximumAttempts: 3, nonRetryableErrorTypes: ['InjectedFault', 'ConfigError'] },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  summary: 'Provision training nodes: lease, tofu apply, ansible',
};

/** The undos of a provisioning (stop, destroy, delete the lease): retried harder, since idle nodes cost money. */
export const releaseOptions: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumAttempts: 8 },
  summary: 'Release training nodes: stop, tofu destroy, delete the lease',
};

export const sweepOptions: ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '5 minutes',
  retry: { maximumAttempts: 3 },
  summary: 'Destroy clusters whose owning workflow is gone',
};
