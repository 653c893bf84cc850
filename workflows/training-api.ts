/**
 * The continuousTraining workflow's public surface: its input and result, the steps and their progress (the
 * `progress` query the CLI and the Web UI read), and its id. Deterministic and free of I/O.
 */
import { defineQuery } from '@temporalio/workflow';
import type {
  ClusterSpec,
  EtlInput,
  RetrainPlan,
  EvaluationResult,
  ExportResult,
  QuantizationResult,
  RegisterResult,
  TrainResult,
  ValidationResult,
} from '../activities/contracts';
import type { DatasetVersion } from '../lib/dataset/ref';
import type { ValidationConfigInput } from '../lib/dataset/validation-config';
import type { GateConfigInput } from '../lib/gates/config';
import type { GateDecision } from '../lib/gates/decide';
import type { RolloutConfigInput } from '../lib/rollout/config';

export interface ContinuousTrainingInput {
  /** Registered model name, e.g. `two-tower-ml-100k`. */
  model: string;
  /**
   * The data to train on. Omitted: a retrain, planned from the champion's recipe (its data sources plus the
   * production feedback served since, its train config, gates and rollout config), with `retrain` changing parts of it.
   */
  dataset?: { name: string; sources: EtlInput['sources']; etl: EtlInput['config'] };
  /** What a planned retrain changes from the champion's recipe (only without `dataset`). */
  retrain?: Partial<
    Pick<
      ContinuousTrainingInput,
      'train' | 'validation' | 'gates' | 'autoRollout' | 'rollout' | 'nprocPerNode' | 'topK'
    >
  >;
  /** Why it runs, when not by hand: recorded as lineage on the MLflow run and version. */
  cause?: { driftReportUri?: string; requestedBy?: string; summary?: string };
  /** models.train config overrides (`model` picks the family: two_tower, sequential, ...). */
  train?: Record<string, unknown>;
  /** torchrun processes per node (2 locally on CPU; GPUs per node in production). */
  nprocPerNode?: number;
  /**
   * Train on provisioned nodes instead of the worker's machine: a provisionTraining child (lease, tofu, ansible,
   * multi-node torchrun, always released). `local-cluster` builds the nodes from network namespaces on this machine.
   */
  cluster?: ClusterSpec;
  trigger?: 'manual' | 'schedule' | 'drift';
  /** Items the exported graph returns per request. */
  topK?: number;
  /** Data validation checks and their severities (defaults: lib/dataset/validation-config.ts). */
  validation?: ValidationConfigInput;
  /** Promotion gates (defaults: lib/gates/config.ts). */
  gates?: GateConfigInput;
  /** Train (and so evaluate, export, quantize) again even if these inputs were trained before. */
  force?: boolean;
  /** Start a rollout when the gates pass (default true); its config (defaults: lib/rollout/config.ts). */
  autoRollout?: boolean;
  rollout?: RolloutConfigInput;
}

/** `rollout-started`: passed the gates, a rollout is on its way; `passed`: passed, no rollout asked for. */
export type TrainingOutcome = 'rollout-started' | 'passed' | 'rejected';

export interface ContinuousTrainingResult {
  outcome: TrainingOutcome;
  /** How a retrain was planned (absent when the input named its data). */
  plan?: RetrainPlan;
  dataset: DatasetVersion;
  validation: ValidationResult;
  training: TrainResult;
  evaluation: EvaluationResult;
  exported: ExportResult;
  /** Absent only for a cascade run started before its stages were quantized (see the workflow's patch). */
  quantization?: QuantizationResult;
  gates: GateDecision;
  registered: RegisterResult;
  rollout?: { workflowId: string; alreadyStarted: boolean };
  stepSeconds: Partial<Record<StepName, number>>;
}

export const STEPS = [
  'plan',
  'etl',
  'validate',
  'train',
  'evaluate',
  'export',
  'quantize',
  'gates',
  'register',
  'rollout',
] as const;
export type StepName = (typeof STEPS)[number];

export interface StepState {
  name: StepName;
  status: 'pending' | 'running' | 'done' | 'reused' | 'failed' | 'skipped';
  startedAt?: string;
  seconds?: number;
  summary?: string;
}

export interface TrainingProgress {
  currentStep: StepName | 'done' | 'failed';
  steps: StepState[];
  datasetVersion?: string;
  modelVersion?: string;
  outcome?: TrainingOutcome;
}

export const progressQuery = defineQuery<TrainingProgress>('progress');

/** The meaningful id of a training workflow: model, dataset and when it was asked for. */
export function trainingWorkflowId(model: string, dataset: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `train-${model}-${dataset}-${stamp}`;
}
