/**
 * The MLflow tag contract: every `recsys.*` tag the platform writes on runs and model versions, named once. The
 * registry activities write them; serving, the rollout and the CLI read them. A tag renamed here is renamed for all.
 */
export const TAGS = {
  // lineage (run and version)
  trainingKey: 'recsys.training_key',
  workflowId: 'recsys.temporal.workflow_id',
  workflowRunId: 'recsys.temporal.run_id',
  trigger: 'recsys.trigger',
  datasetName: 'recsys.dataset.name',
  datasetVersion: 'recsys.dataset.version',
  datasetUri: 'recsys.dataset.uri',
  codeVersion: 'recsys.code_version',
  pythonLockSha256: 'recsys.python_lock_sha256',
  modelFamily: 'recsys.model.family',
  modelUri: 'recsys.model.uri',
  // retraining: the recipe to retrain from, and why this training ran
  trainingInputUri: 'recsys.training_input_uri',
  driftReportUri: 'recsys.drift.report_uri',
  requestedBy: 'recsys.requested_by',
  // what serving loads and verifies: the shipped artefact (int8 or fp32) and its checksum
  onnxUri: 'recsys.onnx.uri',
  onnxSha256: 'recsys.onnx.sha256',
  onnxPrecision: 'recsys.onnx.precision',
  /** `single` (one retrieval graph) or `cascade` (the URI is a cascade manifest: lib/cascade-manifest.ts); absent = single. */
  onnxKind: 'recsys.onnx.kind',
  topK: 'recsys.onnx.top_k',
  historyLen: 'recsys.onnx.history_len',
  fp32OnnxUri: 'recsys.onnx.fp32.uri',
  fp32OnnxSha256: 'recsys.onnx.fp32.sha256',
  /**
   * An HNSW index attached to a single-model version (lib/ann-manifest.ts: the manifest naming the user graph and the
   * index, and its checksum); absent when the version has none. `recsys.onnx.uri` stays the exact graph, the fallback.
   */
  annUri: 'recsys.ann.uri',
  annSha256: 'recsys.ann.sha256',
  /** What the index's check measured (recall@10, depth, graph), or why the version serves exact top-K instead. */
  annCheck: 'recsys.ann.check',
  // gates and promotion
  gates: 'recsys.gates',
  gatesSummary: 'recsys.gates.summary',
  promotionDecision: 'recsys.promotion_decision',
  promoted: 'recsys.promoted',
  previousChampion: 'recsys.previous_champion',
  retired: 'recsys.retired',
  rollout: 'recsys.rollout',
} as const;

/** Families of tags with a variable suffix. */
export const gateTag = (gate: string) => `recsys.gate.${gate.replace(/[^A-Za-z0-9_.-]+/g, '_')}`;
export const quantizationTag = (key: string) => `recsys.quantization.${key}`;
/** MLflow metric and tag keys may not contain '@'. */
export const metricKey = (prefix: string, name: string) => `${prefix}${name.replace('@', '_at_')}`;
export const metricTag = (name: string) => metricKey('recsys.metric.', name);
export const popularityMetricTag = (name: string) => metricKey('recsys.metric.popularity.', name);

/** Registry aliases (stages are deprecated in MLflow). */
export const ALIASES = { champion: 'champion', challenger: 'challenger' } as const;
