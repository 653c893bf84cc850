/**
 * The contract between the workflows and the activities: every step's input and result, in one module. Workflows
 * import it as types only (nothing here runs in a workflow); activities implement it. Results that are stored and
 * reused are zod schemas, so a stored summary is checked before it is trusted.
 */
import { z } from 'zod';
import { HnswGraphKind } from '../lib/ann-manifest';
import { ARTIFACT_KINDS, CASCADE_STAGES, CascadeStage } from '../lib/cascade-manifest';
import type { Anomaly, ValidationStatus } from '../lib/dataset/anomalies';
import type { EtlConfigInput } from '../lib/dataset/etl-config';
import type { DatasetRef, DatasetVersion } from '../lib/dataset/ref';
import type { SourceSpecInput } from '../lib/dataset/source';
import type { DriftConfig } from '../lib/drift/config';
import type { WindowVerdict } from '../lib/drift/evaluate';
import type { ValidationConfigInput } from '../lib/dataset/validation-config';
import type { GateConfigInput } from '../lib/gates/config';
import type { GateDecision } from '../lib/gates/decide';
import type { AnalysisResult } from '../lib/rollout/analysis';
import type { RolloutConfigInput } from '../lib/rollout/config';
import type { ClusterNode } from '../cluster/ssh';
import type { ClusterSpec, ClusterTarget } from '../lib/cluster-spec';

// --- python steps: train, evaluate, export, quantize --------------------------------------------------------------
// Results are zod schemas (their types inferred): a stored summary is reused only while it still fits its schema.

export interface TrainInput {
  /** Registered model name, e.g. `two-tower-ml-100k`. */
  model: string;
  dataset: DatasetVersion;
  /** models.train TrainConfig overrides (the family is `config.model`, two_tower by default). */
  config: Record<string, unknown>;
  /** Processes per node for torchrun (DDP); 1 runs a single process without torchrun. */
  nprocPerNode: number;
  /**
   * Set to force a fresh training of inputs that were trained before (e.g. the workflow id of a forced re-run): it
   * becomes part of the training key, so every output downstream (evaluation, export, quantization) is new too.
   */
  rerun?: string;
  /** Train on these provisioned nodes (torchrun --nnodes) instead of this machine: the provisionTraining saga's. */
  cluster?: ClusterAccess;
}

export const TrainResult = z.object({
  trainingKey: z.string(),
  /** s3:// prefix holding checkpoints, model.pt and result.json of this training. */
  uri: z.string(),
  modelUri: z.string(),
  epochs: z.number().int(),
  finalLoss: z.number(),
  samplesPerSec: z.number(),
  trainSeconds: z.number(),
  worldSize: z.number().int(),
  resumedFromEpoch: z.number().int(),
  /** The resolved training config (defaults filled in), as the model was trained. */
  config: z.record(z.string(), z.unknown()),
  /** The recent-popularity prior fitted on the valid split (models/recent_prior.py), when the config turns it on. */
  recentPrior: z
    .object({ days: z.number(), beta: z.number(), validNdcg: z.number(), baseValidNdcg: z.number() })
    .optional(),
  /** The same inputs were trained before; their output was reused. */
  reused: z.boolean(),
});
export type TrainResult = z.infer<typeof TrainResult>;

/** What a training attempt reports in its heartbeats; the next attempt resumes from `checkpointUri`. */
export interface TrainHeartbeat {
  stage: 'prepare' | 'train' | 'upload';
  pid?: number;
  epoch?: number;
  step?: number;
  stepsPerEpoch?: number;
  epochs?: number;
  loss?: number;
  samplesPerSec?: number;
  checkpointEpoch?: number;
  checkpointUri?: string;
}

/** A point estimate with its 95% percentile bootstrap interval. */
export const Interval = z.object({ point: z.number(), lo: z.number(), hi: z.number() });
export type Interval = z.infer<typeof Interval>;

/** Paired model − other over the same users; `relative` = model / other − 1 when other > 0 on every resample. */
export const Difference = Interval.extend({ relative: Interval.optional() });
export type Difference = z.infer<typeof Difference>;

export const MetricIntervals = z.record(z.string(), Interval);
export type MetricIntervals = z.infer<typeof MetricIntervals>;
export const MetricDifferences = z.record(z.string(), Difference);
export type MetricDifferences = z.infer<typeof MetricDifferences>;

export const RankerIntervals = z.object({
  model: MetricIntervals,
  popularity: MetricIntervals,
  baseline: MetricIntervals.optional(),
});
export type RankerIntervals = z.infer<typeof RankerIntervals>;

export const Differences = z.object({ vsPopularity: MetricDifferences, vsBaseline: MetricDifferences.optional() });
export type Differences = z.infer<typeof Differences>;

/** One slice of users (e.g. `activity=cold`, `popularity=tail`); intervals are empty when it has no users. */
export const SliceResult = z.object({
  dimension: z.string(),
  value: z.string(),
  nUsers: z.number().int().nonnegative(),
  /** Fewer users than the report's minimum (20): reported, not for gating. */
  small: z.boolean(),
  model: MetricIntervals,
  popularity: MetricIntervals,
  baseline: MetricIntervals.optional(),
  vsPopularity: MetricDifferences,
  vsBaseline: MetricDifferences.optional(),
});
export type SliceResult = z.infer<typeof SliceResult>;

/** Warm users (a history before the test window) or cold ones (none): the figures of a slice, without its name. */
export const PopulationResult = SliceResult.omit({ dimension: true, value: true });
export type PopulationResult = z.infer<typeof PopulationResult>;

/** The same figure for the model, the popularity ranker and, when compared with one, the baseline. */
export const PerRanker = <T extends z.ZodType>(value: T) =>
  z.object({ model: value, popularity: value, baseline: value.optional() });

export const EvaluationResult = z.object({
  reportUri: z.string(),
  /** Markdown: the primary metric by slice with intervals and differences, then every metric overall. */
  tableUri: z.string(),
  k: z.number().int().positive(),
  ks: z.array(z.number().int().positive()),
  /** Point estimates over all evaluated users (recall/ndcg/hr at each of `ks`, mrr). */
  model: z.record(z.string(), z.number()),
  popularity: z.record(z.string(), z.number()),
  baseline: z.record(z.string(), z.number()).optional(),
  /** The champion version compared with, when there was one. */
  baselineVersion: z.string().optional(),
  nUsers: z.number().int().nonnegative(),
  nColdUsers: z.number().int().nonnegative(),
  /** `popularity` is recent popularity: the last `popularityDays` days before each user's cut-off, the gates' floor. */
  popularityDays: z.number().positive().optional(),
  /** All-time popularity's point estimates, reported beside recent popularity; no gate uses it. */
  popularityAllTime: z.record(z.string(), z.number()).optional(),
  /** The dataset's evaluation protocol: `time` (the ETL's global time split), `loo` or `random` (models/protocols.py). */
  protocol: z.string().optional(),
  populations: z.object({ warm: PopulationResult, cold: PopulationResult }).optional(),
  intervals: RankerIntervals,
  differences: Differences,
  slices: z.record(z.string(), SliceResult),
  /** Share of catalogue items in some user's top k. */
  coverage: PerRanker(z.number()),
  /** Mean self-information −log2 p(item) of recommended items, bits (null: nothing recommended). */
  novelty: PerRanker(z.number().nullable()),
  bootstrap: z.object({ nResamples: z.number().int(), confidence: z.number(), seed: z.number().int() }),
  reused: z.boolean(),
});
export type EvaluationResult = z.infer<typeof EvaluationResult>;

/** The model to compare with: the current champion, possibly trained on another dataset version. */
export interface EvaluationBaseline {
  modelVersion: string;
  modelUri: string;
  dataset: DatasetVersion;
}

export interface EvaluateInput {
  dataset: DatasetVersion;
  training: TrainResult;
  k?: number;
  baseline?: EvaluationBaseline | null;
}

export interface ExportInput {
  training: TrainResult;
  /** Items per response of the served graph; 100 by default. */
  topK?: number;
}

export const ExportResult = z.object({
  onnxUri: z.string(),
  sha256: z.string(),
  bytes: z.number().int(),
  /** Max |ONNX − PyTorch| score on the verification histories, within `tolerance`. */
  maxAbsDiff: z.number(),
  tolerance: z.number(),
  topK: z.number().int(),
  historyLen: z.number().int(),
  nItems: z.number().int(),
  opset: z.number().int(),
  reused: z.boolean(),
  /**
   * `single`: onnxUri is the retrieval graph. `cascade`: onnxUri is a cascade manifest (lib/cascade-manifest.ts)
   * naming the stages' graphs below, and topK is the final list's length. Absent in results stored before cascades.
   */
  kind: z.enum(ARTIFACT_KINDS).default('single'),
  stages: z.array(CascadeStage).optional(),
  /**
   * The HNSW index attached to a single model (lib/ann-manifest.ts: `uri`/`sha256` are its manifest's), when the
   * config asked for one and it passed its check: recall@10 against exact search >= 0.99 at `expansionSearch`.
   * onnxUri stays the exact graph, the fallback.
   */
  ann: z
    .object({
      uri: z.string().startsWith('s3://'),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      recall: z.number(),
      expansionSearch: z.number().int().positive(),
      /** How the graph's neighbourhoods were chosen (serving/retrieval/hnsw.ts); absent before the angular graph. */
      graph: HnswGraphKind.optional(),
    })
    .optional(),
  /** Why an index was built but not attached (its check failed): the version serves exact top-K. */
  annRejected: z.string().optional(),
});
export type ExportResult = z.infer<typeof ExportResult>;

/** Quality and latency of one graph (NDCG/Recall at k = 10, p50/p99 ms per single-user request, 1 thread). */
export const GraphFigures = z.object({
  ndcgAt10: z.number(),
  recallAt10: z.number(),
  p50Ms: z.number(),
  p99Ms: z.number(),
});
export type GraphFigures = z.infer<typeof GraphFigures>;

/** JSON has no Infinity: an infinite relative change (the float graph's NDCG is 0) is stored as null. */
export const RelativeChange = z
  .number()
  .nullable()
  .transform((v) => v ?? Infinity);

/**
 * One cascade stage's decision, by the single graph's rule: int8 iff the stage's int8 graph is faster beyond noise
 * (p50Ratio and p50RatioHi <= 1 - minSpeedup, timed on the inputs serving gives the stage) and the cascade with it
 * int8 (with the stages kept int8 before it; the rest fp32) keeps its NDCG@10 within the tolerance of the all-fp32
 * cascade's.
 */
export const StageQuantization = z.object({
  name: z.enum(CASCADE_STAGES),
  ships: z.enum(['int8', 'float']),
  reason: z.string(),
  /** The stage's graph as exported (ExportResult.stages) and its int8 copy, stored either way. */
  floatUri: z.string(),
  floatSha256: z.string(),
  int8Uri: z.string(),
  int8Sha256: z.string(),
  int8Bytes: z.number().int(),
  /** The stage graph alone, single-user requests (ms). */
  floatP50Ms: z.number(),
  floatP99Ms: z.number(),
  int8P50Ms: z.number(),
  int8P99Ms: z.number(),
  p50Ratio: z.number(),
  p50RatioLo: z.number(),
  p50RatioHi: z.number(),
  /** The configuration its quality was measured in: this stage and the ones kept int8 before it. */
  int8Stages: z.array(z.enum(CASCADE_STAGES)),
  /** The cascade's NDCG@10 in that configuration, and its change relative to the all-fp32 cascade. */
  ndcgAt10: z.number(),
  relativeNdcgChange: RelativeChange,
  quantizedOps: z.record(z.string(), z.number().int()),
});
export type StageQuantization = z.infer<typeof StageQuantization>;

/**
 * A single graph's quantization, or a cascade's (`kind`). For a cascade: int8Uri/int8Sha256/int8Bytes are a new
 * cascade manifest (lib/cascade-manifest.ts) naming the chosen graph of each stage (its int8 copy where `stages` says
 * int8, else the exported graph); floatUri/floatSha256 the export's manifest; `float` the all-fp32 cascade and `int8`
 * the cascade that ships (latency: the stages' graph time per request, summed); `ships` is int8 when at least one
 * stage ships int8 (the serving artefact is then that manifest), and the speed figures are per stage, in `stages`.
 */
export const QuantizationResult = z.object({
  int8Uri: z.string(),
  int8Sha256: z.string(),
  int8Bytes: z.number().int(),
  /** The float graph the int8 one was made from (ExportResult.onnxUri / sha256). */
  floatUri: z.string(),
  floatSha256: z.string(),
  float: GraphFigures,
  int8: GraphFigures,
  /** Absent in results stored before cascades were quantized. */
  kind: z.enum(ARTIFACT_KINDS).default('single'),
  /** A cascade's per-stage decisions, in stage order. */
  stages: z.array(StageQuantization).optional(),
  /** (int8 NDCG@10 - float NDCG@10) / float NDCG@10. */
  relativeNdcgChange: RelativeChange,
  tolerance: z.number(),
  ships: z.enum(['int8', 'float']),
  /**
   * Why, e.g. `int8 NDCG@10 -2.30% exceeds tolerance 1%` or
   * `int8 not faster beyond noise: p50 ratio 0.96 [0.91, 1.02] (needs <= 0.90); p50 0.026 ms vs 0.027 ms ...`.
   */
  reason: z.string(),
  /**
   * The speed rule's figures (absent in results stored before it): int8 p50 / float p50 over paired runs, its 95%
   * paired-bootstrap interval, and the minimum speed-up. int8 counts as faster iff p50Ratio and p50RatioHi are both
   * <= 1 - minSpeedup.
   */
  p50Ratio: z.number().optional(),
  p50RatioLo: z.number().optional(),
  p50RatioHi: z.number().optional(),
  minSpeedup: z.number().optional(),
  /** Ops the quantizer added, e.g. { MatMulInteger: 3, DynamicQuantizeLinear: 3 }. */
  quantizedOps: z.record(z.string(), z.number().int()),
  nUsers: z.number().int(),
  latencyRuns: z.number().int(),
  reused: z.boolean(),
});
export type QuantizationResult = z.infer<typeof QuantizationResult>;

export interface QuantizationInput {
  dataset: DatasetVersion;
  training: TrainResult;
  exported: ExportResult;
  /** Max relative NDCG@10 loss of the int8 graph; 0.01 (1%) by default. */
  tolerance?: number;
}

// --- end of python steps --------------------------------------------------------------------------------------------

// --- data: etl, validateDataset -------------------------------------------------------------------------------------

export interface EtlInput {
  /** Dataset name, e.g. `ml-100k`. */
  name: string;
  /**
   * Raw logs in the object store: a URI string is read as `config` says; a spec `{ uri, format, ... }` with its own
   * reading (e.g. the serving tier's feedback log, format `recsys-feedback`). See lib/dataset/source.ts.
   */
  sources: SourceSpecInput[];
  config: EtlConfigInput;
}

export interface ValidateDatasetInput {
  dataset: DatasetRef;
  config?: ValidationConfigInput;
}

export interface ValidationResult {
  status: ValidationStatus;
  anomalies: Anomaly[];
  /** The version compared against; absent for the first validated version of the dataset. */
  previousVersion?: string;
  /** s3:// URI of validation.json (validation.txt and statistics.json sit next to it). */
  reportUri: string;
  /** One line for the Web UI, e.g. "FAIL: 1 anomaly (dailyVolumeDip); daily volume on ... ; vs 3f2a...". */
  summary: string;
  /** True when the stored report of an earlier validation (same version, same config) was returned. */
  reused: boolean;
}

// --- registry: checkGates, register, currentChampion, describeVersion, tagVersion, promote, restoreChampion ---------

export interface CheckGatesInput {
  evaluation: EvaluationResult;
  config?: GateConfigInput;
  championVersion?: string;
}

/**
 * The ONNX artefact that serving loads (int8 when quantization passed its gate, else the float export). For a cascade,
 * a manifest: `int8` when at least one of the graphs it names is int8 (QuantizationResult.stages says which).
 */
export interface ServingArtifact {
  onnxUri: string;
  sha256: string;
  precision: 'fp32' | 'int8';
}

export interface RegisterInput {
  model: string;
  workflowId: string;
  workflowRunId: string;
  trigger: string;
  dataset: DatasetVersion;
  trainConfig: Record<string, unknown>;
  training: TrainResult;
  evaluation: EvaluationResult;
  exported: ExportResult;
  serving: ServingArtifact;
  /** Quantization figures recorded as version tags (`recsys.quantization.<key>`). */
  quantization?: Record<string, string | number>;
  gates: GateDecision;
  /** The recipe this training was asked to follow (recordRecipe), tagged so a retrain can start from it. */
  recipeUri?: string;
  /** Why it ran, when not by hand: the drift report and the workflow that asked (tagged on run and version). */
  cause?: { driftReportUri?: string; requestedBy?: string };
}

export interface RegisterResult {
  model: string;
  version: string;
  mlflowRunId: string;
  aliases: string[];
  gatesPassed: boolean;
  decision: string;
  modelUrl: string;
  runUrl: string;
}

/** A registered version with its lineage: the trained model and the dataset version it was trained on. */
export interface ChampionRef {
  version: string;
  modelUri: string;
  dataset: DatasetVersion;
}

export interface TagVersionInput {
  model: string;
  version: string;
  tags: Record<string, string>;
}

export interface PromoteInput {
  model: string;
  version: string;
  reason: string;
  by: string;
  /** Only move the alias if it still points here (the rollout's view of the world); null = no champion. */
  expectedChampion?: string | null;
}

export interface PromoteResult {
  model: string;
  version: string;
  previousChampion?: string;
  /** False when the version already was the champion: nothing was done. */
  changed: boolean;
}

export interface RestoreChampionInput {
  model: string;
  version: string;
  previousChampion?: string;
}

// --- serving environments: deploy, load test, canary analysis (the fleet's own types) -------------------------------

export type {
  EnsureEnvironmentInput,
  EnvironmentState,
  FaultInput,
  ReplicaState,
  SetTrafficWeightsResult,
  VersionMetricsSnapshot,
} from '../fleet/environment';
export type { LoadTestInput, LoadTestResult } from '../fleet/load-test';
export type { MetricsSnapshot } from '../fleet/version-metrics';

export interface CanaryAnalysis {
  result: AnalysisResult;
  /** The window the figures cover (epoch ms), as Prometheus was asked. */
  window: { sinceMs: number; untilMs: number };
}

// --- retraining: what a training was asked to do, and the next one planned from the champion's --------------------

/**
 * Everything a continuousTraining run was asked to do except who asked: recorded next to the registered version
 * (`recsys.training_input_uri`), so a retrain can start from the champion's own recipe with the new data appended.
 */
export interface TrainingRecipe {
  dataset: { name: string; sources: EtlInput['sources']; etl: EtlInput['config'] };
  train?: Record<string, unknown>;
  nprocPerNode?: number;
  topK?: number;
  validation?: ValidationConfigInput;
  gates?: GateConfigInput;
  autoRollout?: boolean;
  rollout?: RolloutConfigInput;
  /** Served feedback up to this instant (epoch ms) is in the dataset's sources; the next retrain starts there. */
  feedbackUntilMs?: number;
}

export interface PlanRetrainInput {
  model: string;
  /** Fields of the recipe to replace (validation, gates, rollout, train config, ...). */
  overrides?: Partial<Omit<TrainingRecipe, 'dataset' | 'feedbackUntilMs'>>;
  /** The serving environment whose feedback becomes training data. */
  feedbackEnv?: string;
}

export interface RetrainPlan {
  recipe: TrainingRecipe;
  basedOn: { championVersion: string; datasetVersion: string; recipeUri: string };
  /** The served feedback appended (rows 0: none since the champion's data; its uri is then undefined). */
  feedback: { uri?: string; rows: number; fromMs: number; toMs: number };
}

export interface RecordRecipeInput {
  model: string;
  workflowId: string;
  workflowRunId: string;
  recipe: TrainingRecipe;
}

// --- drift monitoring ------------------------------------------------------------------------------------------------

export interface DriftContext {
  /** The champion whose traffic is watched and whose dataset defines the buckets (absent: nothing to watch). */
  champion?: { version: string; datasetUri: string; datasetVersion: string };
  /** A rollout of the model running now (its workflow id): drift decisions wait while traffic is being moved. */
  rolloutRunning?: string;
}

export interface SummarizeWindowInput {
  model: string;
  env: string;
  window: { startMs: number; endMs: number };
  /** Feedback up to endMs + graceMs joins the window's answers (clicks come after the answer). */
  graceMs: number;
  /** The dataset version whose statistics define the buckets. */
  datasetUri: string;
}

export interface SummarizeWindowResult {
  uri: string;
  requests: number;
  feedback: number;
  versions: Record<string, number>;
  chunks: number;
  /** The summary existed already (a retried or replayed window is never counted twice). */
  reused: boolean;
}

export interface EvaluateWindowInput {
  model: string;
  env: string;
  summaryUri: string;
  baselineUris: string[];
  config: DriftConfig;
  /** The earlier windows' verdicts, oldest first (for persistence). */
  history: WindowVerdict[];
}

export interface EvaluateWindowResult {
  verdict: WindowVerdict;
  /** The window's report: verdict, per-signal figures, the summaries and config it was judged with. */
  reportUri: string;
}

// --- provisioned training clusters (the provisionTraining saga) ----------------------------------------------------

export type { ChameleonSpec, ClusterSpec, ClusterTarget } from '../lib/cluster-spec';

/** The steps of the saga, in order (a fault can be injected after any of them: tests, game days). */
export const PROVISION_STEPS = ['lease', 'await-lease', 'apply', 'configure', 'train'] as const;
export type ProvisionStep = (typeof PROVISION_STEPS)[number];

export interface ProvisionStepInput {
  clusterId: string;
  /** The workflow the cluster belongs to (owner.json; the sweeper destroys clusters whose owner is closed). */
  workflowId: string;
  cluster: ClusterSpec;
  /** Fail (non-retryably) after doing the step's work: what a crash right after it would leave. */
  failAfter?: boolean;
}

export interface LeaseInfo {
  id: string;
  name: string;
  status: string;
  reservationId?: string;
  flavorId?: string;
  endsAt: string;
  /** When the lease ends (and the nodes with it), epoch ms: training must be done and released before. */
  endsAtMs: number;
}

/** How the controller reaches a provisioned cluster; ssh settings live in the cluster's state directory. */
export interface ClusterAccess {
  clusterId: string;
  target: ClusterTarget;
  /** By rank. */
  nodes: ClusterNode[];
  /** Per node (by rank): the directory ansible put the code, the env file and the wrapper in. */
  homes: string[];
  /** rank 0's private address:29500. */
  rdzvEndpoint: string;
}

export interface ConvergeResult {
  /** By inventory host: tasks that changed something (0 on a second converge). */
  changed: Record<string, number>;
  seconds: number;
}

/** What the sweeper found and what it did. */
export interface SweptCluster {
  clusterId: string;
  owner?: string;
  reason: string;
  removed: string[];
  /** Why it could not be swept this time (the next sweep tries again). */
  error?: string;
}
