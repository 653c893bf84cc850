/**
 * continuousTraining: raw interaction logs → validated dataset version → distributed training → offline evaluation
 * → ONNX export → MLflow registration. Deterministic: every side effect is an activity, data moves by URI.
 *
 * Progress is visible in the Web UI three ways: the `progress` query (steps and their status), the workflow's
 * current details (a one-line status), and the heartbeat details of the running activity (epoch, loss, checkpoint).
 */
import {
  ActivityCancellationType,
  defineQuery,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type * as activities from '../activities';
import type { DatasetRef, EtlInput } from '../activities/etl';
import type { EvaluationResult } from '../activities/evaluation';
import type { ExportResult } from '../activities/export';
import type { RegisterResult } from '../activities/registry';
import type { TrainResult } from '../activities/training';
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
  /** models.train config overrides. */
  train?: Record<string, unknown>;
  /** torchrun processes per node (2 locally on CPU; GPUs per node in production). */
  nprocPerNode?: number;
  trigger?: 'manual' | 'schedule' | 'drift';
  /** Items the exported graph returns per request. */
  topK?: number;
}

export interface ContinuousTrainingResult {
  dataset: DatasetRef;
  training: TrainResult;
  evaluation: EvaluationResult;
  exported: ExportResult;
  registered: RegisterResult;
  stepSeconds: Record<StepName, number>;
}

export const STEPS = ['etl', 'train', 'evaluate', 'export', 'register'] as const;
export type StepName = (typeof STEPS)[number];

export interface StepState {
  name: StepName;
  status: 'pending' | 'running' | 'done' | 'reused' | 'failed';
  startedAt?: string;
  seconds?: number;
  summary?: string;
}

export interface TrainingProgress {
  currentStep: StepName | 'done' | 'failed';
  steps: StepState[];
  datasetVersion?: string;
  modelVersion?: string;
}

export const progressQuery = defineQuery<TrainingProgress>('progress');

const etlActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['DataValidationError', 'ConfigError'] },
  summary: 'ETL: validate raw logs, write a content-addressed dataset version',
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
  summary: 'Full-ranking evaluation vs popularity',
});
const exportActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '30 minutes',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['OnnxParityError'] },
  summary: 'Export ONNX (user tower + item embeddings + TopK), check parity',
});
const registryActivity = proxyActivities<typeof activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5 },
  summary: 'Register in MLflow, set aliases',
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
  const stepSeconds = {} as Record<StepName, number>;

  async function step<T extends object>(name: StepName, run: () => Promise<T>, describe: (r: T) => string): Promise<T> {
    const state = progress.steps.find((s) => s.name === name)!;
    progress.currentStep = name;
    state.status = 'running';
    state.startedAt = new Date().toISOString();
    setCurrentDetails(`**${name}** running (${STEPS.indexOf(name) + 1}/${STEPS.length})`);
    const started = Date.now();
    try {
      const result = await run();
      state.seconds = (Date.now() - started) / 1000;
      stepSeconds[name] = state.seconds;
      state.status = 'reused' in result && result.reused === true ? 'reused' : 'done';
      state.summary = describe(result);
      log.info(`step ${name} ${state.status}`, { summary: state.summary, seconds: state.seconds });
      return result;
    } catch (err) {
      state.status = 'failed';
      progress.currentStep = 'failed';
      setCurrentDetails(`**${name}** failed`);
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

  const trainConfig = input.train ?? {};
  const training = await step(
    'train',
    () =>
      trainActivity.train({ model: input.model, dataset, config: trainConfig, nprocPerNode: input.nprocPerNode ?? 2 }),
    (t) =>
      `${t.epochs} epochs on ${t.worldSize} process(es), loss ${t.finalLoss.toFixed(4)}, ` +
      `${Math.round(t.samplesPerSec)} samples/s` +
      (t.resumedFromEpoch ? `, resumed from epoch ${t.resumedFromEpoch}` : ''),
  );

  const evaluation = await step(
    'evaluate',
    () => evalActivity.evaluate({ dataset, training, k: 10 }),
    (e) =>
      `NDCG@10 ${fmt(e.model['ndcg@10'])} vs popularity ${fmt(e.popularity['ndcg@10'])}; ` +
      `Recall@10 ${fmt(e.model['recall@10'])} vs ${fmt(e.popularity['recall@10'])} (${e.nUsers} users)`,
  );

  const exported = await step(
    'export',
    () => exportActivity.exportOnnx({ training, topK: input.topK ?? 100 }),
    (x) => `ONNX top-${x.topK}, max |Δ| vs PyTorch ${x.maxAbsDiff.toExponential(2)} (tolerance ${x.tolerance})`,
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
      }),
    (r) => `${r.model} v${r.version} [${r.aliases.join(', ')}]: ${r.decision}`,
  );
  progress.modelVersion = registered.version;
  progress.currentStep = 'done';
  upsertSearchAttributes([
    { key: RecsysModelVersion, value: registered.version },
    { key: RecsysStage, value: registered.promotedToChampion ? 'champion' : 'challenger' },
  ]);
  setCurrentDetails(`**done**: ${registered.model} v${registered.version} (${registered.aliases.join(', ')})`);
  return { dataset, training, evaluation, exported, registered, stepSeconds };
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
