/**
 * continuousTraining: raw interaction logs → validated dataset version (checked against the previous one) →
 * distributed training → offline evaluation with slices and confidence intervals against popularity and the current
 * champion → ONNX export → int8 quantization (gated) → promotion gates → MLflow registration (`challenger`) → a
 * `rollout` workflow, started as an abandoned child: only an approved rollout moves `champion`.
 * Deterministic: every side effect is an activity, data moves by URI.
 *
 * Every step's output is content-addressed, so re-running with the same dataset version and config reuses finished
 * steps (marked `reused`); `force` trains afresh. A model that fails the gates is not an error: it stays registered
 * as `challenger`, the version tags say which gate failed, and the workflow completes with outcome `rejected`.
 *
 * Progress is visible in the Web UI three ways: the `progress` query (steps and their status), the workflow's
 * current details (a table of the steps), and the heartbeat details of the running activity (epoch, loss, checkpoint).
 */
import { familyOf } from '../lib/model-family';
import {
  ActivityCancellationType,
  ApplicationFailure,
  defineQuery,
  log,
  ParentClosePolicy,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type * as activities from '../activities';
import type { ValidationResult } from '../activities/data-validation';
import type { EtlInput } from '../activities/etl';
import type { DatasetVersion } from '../lib/dataset/ref';
import type { EvaluationResult } from '../activities/evaluation';
import type { ExportResult } from '../activities/export';
import type { QuantizationResult } from '../activities/quantization';
import type { RegisterResult, ServingArtifact } from '../activities/registry';
import type { TrainResult } from '../activities/training';
import type { ValidationConfigInput } from '../lib/dataset/validation-config';
import type { GateConfigInput } from '../lib/gates/config';
import type { GateDecision } from '../lib/gates/decide';
import type { RolloutConfigInput } from '../lib/rollout/config';
import { rollout, rolloutWorkflowId } from './rollout';
import {
  RecsysDatasetVersion,
  RecsysModel,
  RecsysModelVersion,
  RecsysStage,
  RecsysTrigger,
} from '../lib/search-attributes';

export interface ContinuousTrainingInput {
  /** Registered model name, e.g. `two-tower-ml-100k`. */
  model: string;
  dataset: { name: string; sources: string[]; etl: EtlInput['config'] };
  /** models.train config overrides (`model` picks the family: two_tower, sequential, ...). */
  train?: Record<string, unknown>;
  /** torchrun processes per node (2 locally on CPU; GPUs per node in production). */
  nprocPerNode?: number;
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
  dataset: DatasetVersion;
  validation: ValidationResult;
  training: TrainResult;
  evaluation: EvaluationResult;
  exported: ExportResult;
  quantization: QuantizationResult;
  gates: GateDecision;
  registered: RegisterResult;
  rollout?: { workflowId: string; alreadyStarted: boolean };
  stepSeconds: Partial<Record<StepName, number>>;
}

export const STEPS = [
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

const etlActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['DataValidationError', 'ConfigError'] },
  summary: 'ETL: validate raw logs, write a content-addressed dataset version',
});
const validationActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '20 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['ConfigError'] },
  summary: 'Data validation: statistics and schema vs the previous version',
});
const trainActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '6 hours',
  // torchrun reports progress every second and the activity heartbeats at least every 5 s: a silent minute means
  // the worker is gone, and the retry resumes from the last checkpoint on another worker.
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', maximumAttempts: 5 },
  // A cancelled workflow closes only after the activity has stopped torchrun, never with training still running.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  summary: 'Train with torchrun (DDP), checkpoint every epoch',
});
const evalActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
  summary: 'Full-ranking evaluation with slices and bootstrap CIs vs popularity and the champion',
});
const exportActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['OnnxParityError'] },
  summary: 'Export ONNX (user tower + item embeddings + TopK), check parity',
});
const quantizeActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3 },
  summary: 'Quantize int8, evaluate and time it against fp32',
});
const registryActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['GateConfigError', 'RegistryLineageError'] },
  summary: 'MLflow registry',
});

export async function continuousTraining(input: ContinuousTrainingInput): Promise<ContinuousTrainingResult> {
  const info = workflowInfo();
  const progress: TrainingProgress = {
    currentStep: 'etl',
    steps: STEPS.map((name) => ({ name, status: 'pending' })),
  };
  setHandler(progressQuery, () => progress);
  upsertSearchAttributes([
    { key: RecsysModel, value: input.model },
    { key: RecsysTrigger, value: input.trigger ?? 'manual' },
    { key: RecsysStage, value: 'training' },
  ]);
  const stepSeconds: Partial<Record<StepName, number>> = {};

  async function step<T extends object>(name: StepName, run: () => Promise<T>, describe: (r: T) => string): Promise<T> {
    const state = progress.steps.find((s) => s.name === name)!;
    progress.currentStep = name;
    state.status = 'running';
    state.startedAt = new Date().toISOString();
    showProgress(progress);
    const started = Date.now();
    try {
      const result = await run();
      state.seconds = (Date.now() - started) / 1000;
      stepSeconds[name] = state.seconds;
      state.status = 'reused' in result && result.reused === true ? 'reused' : 'done';
      state.summary = describe(result);
      log.info(`step ${name} ${state.status}`, { summary: state.summary, seconds: state.seconds });
      showProgress(progress);
      return result;
    } catch (err) {
      state.status = 'failed';
      progress.currentStep = 'failed';
      showProgress(progress);
      throw err;
    }
  }

  const dataset = await step(
    'etl',
    () => etlActivity.etl({ name: input.dataset.name, sources: input.dataset.sources, config: input.dataset.etl }),
    (d) =>
      `${d.name}@${d.version}: ${d.counts.interactions} interactions, ${d.counts.users} users, ${d.counts.items} items`,
  );
  progress.datasetVersion = dataset.version;
  upsertSearchAttributes([{ key: RecsysDatasetVersion, value: dataset.version }]);

  const validation = await step(
    'validate',
    () => validationActivity.validateDataset({ dataset, config: input.validation }),
    (v) => v.summary,
  );
  if (validation.status === 'fail') {
    progress.currentStep = 'failed';
    progress.steps.find((s) => s.name === 'validate')!.status = 'failed';
    showProgress(progress);
    // Not retryable: the data, not the infrastructure, is wrong. The report names every anomaly.
    throw ApplicationFailure.create({
      type: 'DataValidationError',
      message: `dataset ${dataset.name}@${dataset.version} failed validation: ${validation.summary} (report: ${validation.reportUri})`,
      nonRetryable: true,
      details: [{ reportUri: validation.reportUri, anomalies: validation.anomalies }],
    });
  }

  const trainConfig = input.train ?? {};
  const training = await step(
    'train',
    () =>
      trainActivity.train({
        model: input.model,
        dataset,
        config: trainConfig,
        nprocPerNode: input.nprocPerNode ?? 2,
        rerun: input.force ? info.workflowId : undefined,
      }),
    (t) =>
      `${familyOf(t.config)}: ${t.epochs} epochs on ${t.worldSize} process(es), ` +
      `loss ${t.finalLoss.toFixed(4)}, ${Math.round(t.samplesPerSec)} samples/s` +
      (t.resumedFromEpoch ? `, resumed from epoch ${t.resumedFromEpoch}` : ''),
  );

  const champion = await registryActivity.currentChampion({ model: input.model });
  const evaluation = await step(
    'evaluate',
    () =>
      evalActivity.evaluate({
        dataset,
        training,
        k: 10,
        baseline: champion && {
          modelVersion: champion.version,
          modelUri: champion.modelUri,
          dataset: champion.dataset,
        },
      }),
    (e) =>
      `NDCG@10 ${fmt(e.model['ndcg@10'])} vs popularity ${fmt(e.popularity['ndcg@10'])}` +
      (champion ? ` and champion v${champion.version}` : '') +
      `; Recall@10 ${fmt(e.model['recall@10'])} (${e.nUsers} users)`,
  );

  const exported = await step(
    'export',
    () => exportActivity.exportOnnx({ training, topK: input.topK ?? 100 }),
    (x) => `ONNX top-${x.topK}, max |Δ| vs PyTorch ${x.maxAbsDiff.toExponential(2)} (tolerance ${x.tolerance})`,
  );

  const quantization = await step(
    'quantize',
    () =>
      quantizeActivity.quantize({
        dataset,
        training,
        exported,
        tolerance: input.gates?.quantization?.ndcgTolerance,
      }),
    (q) => `ships ${q.ships}: ${q.reason}`,
  );

  const gates = await step(
    'gates',
    () => registryActivity.checkGates({ evaluation, config: input.gates, championVersion: champion?.version }),
    (g) => g.summary,
  );

  const registered = await step(
    'register',
    () =>
      registryActivity.register({
        model: input.model,
        workflowId: info.workflowId,
        workflowRunId: info.runId,
        trigger: input.trigger ?? 'manual',
        dataset,
        trainConfig,
        training,
        evaluation,
        exported,
        serving: servingArtifact(exported, quantization),
        quantization: quantizationTags(quantization),
        gates,
      }),
    (r) => `${r.model} v${r.version} [${r.aliases.join(', ')}]`,
  );
  progress.modelVersion = registered.version;
  upsertSearchAttributes([{ key: RecsysModelVersion, value: registered.version }]);

  let started: ContinuousTrainingResult['rollout'];
  let outcome: TrainingOutcome = 'rejected';
  const rolloutState = progress.steps.find((s) => s.name === 'rollout')!;
  if (!gates.passed) {
    rolloutState.status = 'skipped';
    rolloutState.summary = `kept as challenger: ${gates.summary}`;
  } else if (input.autoRollout === false) {
    outcome = 'passed';
    rolloutState.status = 'skipped';
    rolloutState.summary = `passed the gates; no rollout asked for (recsys rollout start ${input.model} ${registered.version})`;
  } else {
    outcome = 'rollout-started';
    started = await step(
      'rollout',
      () => startRollout(input.model, registered.version, input.rollout, info.workflowId),
      (r) =>
        r.alreadyStarted
          ? `rollout ${r.workflowId} already running`
          : `started ${r.workflowId} (staging → canary → approval)`,
    );
  }
  progress.currentStep = 'done';
  progress.outcome = outcome;
  upsertSearchAttributes([{ key: RecsysStage, value: gates.passed ? 'passed-gates' : 'rejected' }]);
  showProgress(progress);
  return {
    outcome,
    dataset,
    validation,
    training,
    evaluation,
    exported,
    quantization,
    gates,
    registered,
    rollout: started,
    stepSeconds,
  };
}

/** Starts the rollout as a child that outlives this workflow; a rollout of this version already running is fine. */
async function startRollout(
  model: string,
  version: string,
  config: RolloutConfigInput | undefined,
  parent: string,
): Promise<{ workflowId: string; alreadyStarted: boolean }> {
  const workflowId = rolloutWorkflowId(model, version);
  try {
    await startChild(rollout, {
      workflowId,
      args: [{ model, version, config, startedBy: `continuousTraining ${parent}` }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `Rollout of ${model} v${version}`,
    });
    return { workflowId, alreadyStarted: false };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, alreadyStarted: true };
    throw err;
  }
}

/** The artefact serving loads: int8 when quantization passed its gate, else the float export. */
function servingArtifact(exported: ExportResult, q: QuantizationResult): ServingArtifact {
  return q.ships === 'int8'
    ? { onnxUri: q.int8Uri, sha256: q.int8Sha256, precision: 'int8' }
    : { onnxUri: exported.onnxUri, sha256: exported.sha256, precision: 'fp32' };
}

function quantizationTags(q: QuantizationResult): Record<string, string | number> {
  return {
    ships: q.ships,
    reason: q.reason,
    int8_uri: q.int8Uri,
    int8_sha256: q.int8Sha256,
    fp32_ndcg_at_10: q.float.ndcgAt10,
    int8_ndcg_at_10: q.int8.ndcgAt10,
    relative_ndcg_change: q.relativeNdcgChange,
    fp32_p50_ms: q.float.p50Ms,
    int8_p50_ms: q.int8.p50Ms,
    fp32_p99_ms: q.float.p99Ms,
    int8_p99_ms: q.int8.p99Ms,
    tolerance: q.tolerance,
  };
}

/** The steps as a Markdown table in the workflow's current details (shown on the Web UI's workflow page). */
function showProgress(p: TrainingProgress): void {
  const icon: Record<StepState['status'], string> = {
    pending: '·',
    running: '▶',
    done: '✓',
    reused: '↺ reused',
    failed: '✗',
    skipped: '–',
  };
  const head =
    p.currentStep === 'done'
      ? `**${p.outcome ?? 'done'}**` + (p.modelVersion ? ` (v${p.modelVersion})` : '')
      : `**${p.currentStep}**`;
  const rows = p.steps.map(
    (s) =>
      `| ${s.name} | ${icon[s.status]} | ${s.seconds === undefined ? '' : s.seconds.toFixed(1)} | ${(s.summary ?? '').replace(/\|/g, '/')} |`,
  );
  setCurrentDetails([head, '', '| step | status | s | summary |', '|---|---|---|---|', ...rows].join('\n'));
}

function fmt(v: number | undefined): string {
  return v === undefined ? 'n/a' : v.toFixed(4);
}

/** The meaningful id of a training workflow: model, dataset and when it was asked for. */
export function trainingWorkflowId(model: string, dataset: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `train-${model}-${dataset}-${stamp}`;
}
