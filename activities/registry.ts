/**
 * Registry activities: one MLflow run per training (params, metrics, artefacts, lineage tags) and one registered
 * model version per training, aliased `challenger` and tagged with its gate results and the artefact that ships.
 * Keyed by the training key, so a retried or repeated registration creates nothing twice. Moving `champion` is a
 * separate, explicit step (`promote`), taken only when the gates pass.
 */
import { familyOf } from '../lib/model-family';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { codeVersion, pythonLockSha256 } from '../lib/code-version';
import { config } from '../lib/config';
import { withTempDir } from '../lib/files';
import { MlflowClient, filterValue, tagsOf } from '../lib/mlflow/client';
import type { MlflowModelVersion, MlflowRun } from '../lib/mlflow/schemas';
import { ALIASES, gateTag, metricKey, metricTag, popularityMetricTag, quantizationTag, TAGS } from '../lib/mlflow/tags';
import { Manifest } from '../lib/dataset/manifest';
import { objectStore } from '../lib/object-store';
import { manifestUri, parseDatasetUri, type DatasetVersion } from '../lib/dataset/ref';
import type { EvaluationResult } from './evaluation';
import type { ExportResult } from './export';
import type { TrainResult } from './training';
import type { GateDecision } from '../lib/gates/decide';

export const PRIMARY_METRIC = 'ndcg@10';

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
  /** The ONNX artefact that serving loads (int8 when quantization passed its gate, else the float export). */
  serving: ServingArtifact;
  /** Quantization figures recorded as version tags (`recsys.quantization.<key>`). */
  quantization?: Record<string, string | number>;
  gates: GateDecision;
}

export interface ServingArtifact {
  onnxUri: string;
  sha256: string;
  precision: 'fp32' | 'int8';
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

/** The current champion, with what evaluation needs to compare a challenger with it on the same test split. */
export interface ChampionRef {
  version: string;
  modelUri: string;
  dataset: DatasetVersion;
}

async function findOrCreateRun(mlflow: MlflowClient, experimentId: string, input: RegisterInput): Promise<MlflowRun> {
  const key = input.training.trainingKey;
  const found = await mlflow.searchRuns([experimentId], `tags.\`${TAGS.trainingKey}\` = ${filterValue(key)}`, 1);
  if (found[0]) return found[0];
  return mlflow.createRun(experimentId, `${input.model}-${input.dataset.version}-${key.slice(0, 8)}`, {
    [TAGS.trainingKey]: key,
    [TAGS.workflowId]: input.workflowId,
    [TAGS.workflowRunId]: input.workflowRunId,
    [TAGS.trigger]: input.trigger,
    [TAGS.datasetName]: input.dataset.name,
    [TAGS.datasetVersion]: input.dataset.version,
    [TAGS.datasetUri]: input.dataset.uri,
    [TAGS.codeVersion]: codeVersion(),
    [TAGS.pythonLockSha256]: pythonLockSha256(),
    'mlflow.source.name': 'recsys continuousTraining',
  });
}

async function logRun(mlflow: MlflowClient, run: MlflowRun, input: RegisterInput): Promise<void> {
  const { training, evaluation, exported, dataset } = input;
  const metrics: Record<string, number> = {
    train_final_loss: training.finalLoss,
    train_samples_per_sec: training.samplesPerSec,
    train_seconds: training.trainSeconds,
    onnx_max_abs_diff: exported.maxAbsDiff,
    eval_users: evaluation.nUsers,
    eval_cold_users: evaluation.nColdUsers,
  };
  for (const [k, v] of Object.entries(evaluation.model)) metrics[metricKey('', k)] = v;
  for (const [k, v] of Object.entries(evaluation.popularity)) metrics[metricKey('popularity_', k)] = v;
  metrics[`coverage_at_${evaluation.k}`] = evaluation.coverage.model;
  const novelty = evaluation.novelty.model;
  if (novelty !== null && novelty !== undefined) metrics[`novelty_at_${evaluation.k}`] = novelty;
  const params: Record<string, string> = {
    world_size: String(training.worldSize),
    dataset_interactions: String(dataset.counts.interactions),
    dataset_users: String(dataset.counts.users),
    dataset_items: String(dataset.counts.items),
    onnx_top_k: String(exported.topK),
  };
  // The resolved config (every default filled in), so a run can be reproduced from MLflow alone.
  for (const [k, v] of Object.entries(training.config ?? input.trainConfig)) params[`train.${k}`] = String(v);
  await mlflow.logBatch(run.info.run_id, { metrics, params });

  const store = objectStore();
  await withTempDir('register', async (dir) => {
    const uploads: [string, string][] = [
      [exported.onnxUri, 'model/model.onnx'],
      ...(input.serving.precision === 'int8'
        ? [[input.serving.onnxUri, 'model/model.int8.onnx'] as [string, string]]
        : []),
      [evaluation.reportUri, 'evaluation/report.json'],
      [evaluation.tableUri, 'evaluation/report.md'],
      [dataset.manifestUri, 'dataset/manifest.json'],
    ];
    for (const [uri, artifactPath] of uploads) {
      const local = path.join(dir, path.basename(artifactPath));
      await store.downloadFile(uri, local);
      await mlflow.uploadArtifact(run, artifactPath, await fs.readFile(local));
    }
  });
  await mlflow.finishRun(run.info.run_id);
}

export async function register(input: RegisterInput): Promise<RegisterResult> {
  const ctx = Context.current();
  const mlflow = new MlflowClient();
  const experimentId = await mlflow.ensureExperiment(input.model);
  ctx.heartbeat({ stage: 'run' });
  const run = await findOrCreateRun(mlflow, experimentId, input);
  if (run.info.status !== 'FINISHED') await logRun(mlflow, run, input);

  ctx.heartbeat({ stage: 'version' });
  await mlflow.ensureRegisteredModel(input.model, 'Retrieval model trained by recsys continuousTraining');
  const existing = await mlflow.searchModelVersions(
    `name = ${filterValue(input.model)} and run_id = ${filterValue(run.info.run_id)}`,
  );
  const version =
    existing[0] ??
    (await mlflow.createModelVersion(input.model, `${run.info.artifact_uri}/model`, run.info.run_id, {
      [TAGS.trainingKey]: input.training.trainingKey,
      [TAGS.workflowId]: input.workflowId,
      [TAGS.workflowRunId]: input.workflowRunId,
      [TAGS.datasetName]: input.dataset.name,
      [TAGS.datasetVersion]: input.dataset.version,
      [TAGS.datasetUri]: input.dataset.uri,
      [TAGS.codeVersion]: codeVersion(),
      [TAGS.modelFamily]: familyOf(input.training.config),
      [TAGS.modelUri]: input.training.modelUri,
      // What serving loads and verifies: the shipped artefact (int8 or fp32) and its checksum.
      [TAGS.onnxUri]: input.serving.onnxUri,
      [TAGS.onnxSha256]: input.serving.sha256,
      [TAGS.onnxPrecision]: input.serving.precision,
      [TAGS.topK]: String(input.exported.topK),
      [TAGS.historyLen]: String(input.exported.historyLen),
      [TAGS.fp32OnnxUri]: input.exported.onnxUri,
      [TAGS.fp32OnnxSha256]: input.exported.sha256,
    }));

  // Figures and gate outcomes are (re)written on every registration: the same version judged again against a new
  // champion gets the new verdict, and tags are idempotent.
  const tags: Record<string, string> = {
    [metricTag(PRIMARY_METRIC)]: String(input.evaluation.model[PRIMARY_METRIC] ?? NaN),
    [popularityMetricTag(PRIMARY_METRIC)]: String(input.evaluation.popularity[PRIMARY_METRIC] ?? NaN),
    [TAGS.gates]: input.gates.passed ? 'passed' : 'failed',
    [TAGS.gatesSummary]: input.gates.summary.slice(0, 4000),
    [TAGS.promotionDecision]: input.gates.passed
      ? 'passed the promotion gates'
      : `kept as challenger: ${input.gates.summary}`.slice(0, 4000),
  };
  for (const check of input.gates.checks)
    tags[gateTag(check.gate)] = `${check.outcome}: ${check.detail}`.slice(0, 4000);
  for (const [k, v] of Object.entries(input.quantization ?? {})) tags[quantizationTag(k)] = String(v);
  for (const [key, value] of Object.entries(tags))
    await mlflow.setModelVersionTag(input.model, version.version, key, value);

  await mlflow.setAlias(input.model, ALIASES.challenger, version.version);
  const final = await mlflow.getModelVersion(input.model, version.version);
  const base = config().mlflowUrl;
  return {
    model: input.model,
    version: version.version,
    mlflowRunId: run.info.run_id,
    aliases: final.aliases ?? [],
    gatesPassed: input.gates.passed,
    decision: tags[TAGS.promotionDecision]!,
    modelUrl: `${base}/#/models/${encodeURIComponent(input.model)}/versions/${version.version}`,
    runUrl: `${base}/#/experiments/${experimentId}/runs/${run.info.run_id}`,
  };
}

/** The version behind `champion`, or undefined for a model without one (or not registered yet). */
export async function currentChampion(input: { model: string }): Promise<ChampionRef | undefined> {
  const champion = await new MlflowClient().getVersionByAlias(input.model, ALIASES.champion);
  return champion ? lineageOf(input.model, champion) : undefined;
}

/** A registered version with its lineage: the trained model and the dataset version it was trained on. */
export async function describeVersion(input: { model: string; version: string }): Promise<ChampionRef> {
  return lineageOf(input.model, await new MlflowClient().getModelVersion(input.model, input.version));
}

async function lineageOf(model: string, mv: MlflowModelVersion): Promise<ChampionRef> {
  const tags = tagsOf(mv);
  const modelUri = tags[TAGS.modelUri];
  const datasetUri = tags[TAGS.datasetUri];
  if (!modelUri || !datasetUri)
    throw ApplicationFailure.nonRetryable(
      `${model} v${mv.version} lacks the tags ${TAGS.modelUri} / ${TAGS.datasetUri}`,
      'RegistryLineageError',
    );
  const manifestAt = manifestUri(parseDatasetUri(datasetUri).uri);
  const manifest = Manifest.parse(await objectStore().getJson(manifestAt));
  return {
    version: mv.version,
    modelUri,
    dataset: {
      name: manifest.name,
      version: manifest.version,
      uri: manifest.uri,
      manifestUri: manifestAt,
      counts: manifest.counts,
      reused: true,
    },
  };
}

/** Sets tags on a version (rollout outcomes, approvals): the registry's own record of what happened to it. */
export async function tagVersion(input: {
  model: string;
  version: string;
  tags: Record<string, string>;
}): Promise<void> {
  const mlflow = new MlflowClient();
  for (const [key, value] of Object.entries(input.tags))
    await mlflow.setModelVersionTag(input.model, input.version, key, value.slice(0, 4000));
}

export interface PromoteResult {
  model: string;
  version: string;
  previousChampion?: string;
  /** False when the version already was the champion: nothing was done. */
  changed: boolean;
}

/**
 * Points `champion` at a version and records who/what did it and the previous champion on the version's tags, so
 * the registry itself says which version served when. Idempotent: promoting the champion again changes nothing.
 */
export async function promote(input: {
  model: string;
  version: string;
  reason: string;
  by: string;
  /** Only move the alias if it still points here (the rollout's view of the world); undefined = no champion. */
  expectedChampion?: string | null;
}): Promise<PromoteResult> {
  const mlflow = new MlflowClient();
  const current = await mlflow.getVersionByAlias(input.model, ALIASES.champion);
  if (current?.version === input.version) return { model: input.model, version: input.version, changed: false };
  if (input.expectedChampion !== undefined && (current?.version ?? null) !== input.expectedChampion)
    throw ApplicationFailure.nonRetryable(
      `champion of ${input.model} is ${current ? `v${current.version}` : 'unset'}, expected ` +
        `${input.expectedChampion === null ? 'unset' : `v${input.expectedChampion}`}: someone else moved it`,
      'ChampionMovedError',
    );
  const at = new Date().toISOString();
  if (current) await mlflow.setModelVersionTag(input.model, input.version, TAGS.previousChampion, current.version);
  await mlflow.setModelVersionTag(input.model, input.version, TAGS.promoted, `${at} by ${input.by}: ${input.reason}`);
  await mlflow.setAlias(input.model, ALIASES.champion, input.version);
  if (current)
    await mlflow.setModelVersionTag(input.model, current.version, TAGS.retired, `${at}: replaced by v${input.version}`);
  return { model: input.model, version: input.version, previousChampion: current?.version, changed: true };
}

/** Compensation of `promote`: puts `champion` back where it was (or removes it) if it still points at `version`. */
export async function restoreChampion(input: {
  model: string;
  version: string;
  previousChampion?: string;
}): Promise<{ restored: boolean }> {
  const mlflow = new MlflowClient();
  const current = await mlflow.getVersionByAlias(input.model, ALIASES.champion);
  if (current?.version !== input.version) return { restored: false };
  if (input.previousChampion) await mlflow.setAlias(input.model, ALIASES.champion, input.previousChampion);
  else await mlflow.deleteAlias(input.model, ALIASES.champion);
  await mlflow.setModelVersionTag(input.model, input.version, TAGS.promoted, `reverted ${new Date().toISOString()}`);
  return { restored: true };
}
