/**
 * Registry activities: one MLflow run per training (params, metrics, artefacts, lineage tags) and one registered
 * model version per training, aliased `challenger` and tagged with its gate results and the artefact that ships.
 * The version is an MLflow Model: a LoggedModel of the run with the `onnx` flavor over the graph that ships (a
 * cascade's recall stage, its other stages beside it), its signature and an input example, so MLflow's UI shows the
 * schema and `mlflow.onnx` / `mlflow.pyfunc` load `models:/<name>/<version>`. The version is created only from a
 * READY logged model, in one call that carries every tag serving reads: a failure leaves no version, or a complete one.
 * Keyed by the training key, so a retried or repeated registration creates nothing twice. Moving `champion` is a
 * separate, explicit step (`promote`), taken only when the gates pass.
 */
import { familyOf } from '../lib/model-family';
import { parseCascadeManifest, type CascadeStage } from '../lib/cascade-manifest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { codeVersion, pythonLockSha256 } from '../lib/code-version';
import { withTempDir } from '../lib/files';
import { filterValue, tagsOf, type MlflowClient } from '../lib/mlflow/client';
import { ensureLoggedModel } from '../lib/mlflow/logged-model';
import { onnxModelFiles } from '../lib/mlflow/mlmodel';
import { pythonEnvironment } from '../lib/mlflow/python-env';
import type { MlflowLoggedModel, MlflowModelVersion, MlflowRun } from '../lib/mlflow/schemas';
import {
  versionModel,
  VersionModelError,
  type VersionGraph,
  type VersionModelInput,
} from '../lib/mlflow/version-model';
import { ALIASES, gateTag, metricKey, metricTag, popularityMetricTag, quantizationTag, TAGS } from '../lib/mlflow/tags';
import { Manifest } from '../lib/dataset/manifest';
import type { ObjectStore } from '../lib/object-store';
import { manifestUri, parseDatasetUri } from '../lib/dataset/ref';
import type {
  ChampionRef,
  ExportResult,
  PromoteInput,
  PromoteResult,
  RegisterInput,
  RegisterResult,
  RestoreChampionInput,
  TagVersionInput,
} from './contracts';
import type { ActivityDeps } from './deps';

export const PRIMARY_METRIC = 'ndcg@10';

/** Where a run and its version come from: the training, the workflow that made it, the data and the code. */
const lineageTags = (input: RegisterInput): Record<string, string> => ({
  [TAGS.trainingKey]: input.training.trainingKey,
  [TAGS.workflowId]: input.workflowId,
  [TAGS.workflowRunId]: input.workflowRunId,
  [TAGS.datasetName]: input.dataset.name,
  [TAGS.datasetVersion]: input.dataset.version,
  [TAGS.datasetUri]: input.dataset.uri,
  [TAGS.codeVersion]: codeVersion(),
  ...(input.recipeUri ? { [TAGS.trainingInputUri]: input.recipeUri } : {}),
  ...(input.cause?.driftReportUri ? { [TAGS.driftReportUri]: input.cause.driftReportUri } : {}),
  ...(input.cause?.requestedBy ? { [TAGS.requestedBy]: input.cause.requestedBy } : {}),
});

async function findOrCreateRun(mlflow: MlflowClient, experimentId: string, input: RegisterInput): Promise<MlflowRun> {
  const key = input.training.trainingKey;
  const found = await mlflow.searchRuns([experimentId], `tags.\`${TAGS.trainingKey}\` = ${filterValue(key)}`, 1);
  if (found[0]) return found[0];
  return mlflow.createRun(experimentId, `${input.model}-${input.dataset.version}-${key.slice(0, 8)}`, {
    ...lineageTags(input),
    [TAGS.trigger]: input.trigger,
    [TAGS.pythonLockSha256]: pythonLockSha256(),
    'mlflow.source.name': 'recsys continuousTraining',
  });
}

/** The run's params (also the logged model's): sizes and the resolved config, so MLflow alone can reproduce it. */
function runParams(input: RegisterInput): Record<string, string> {
  const { training, exported, dataset } = input;
  const params: Record<string, string> = {
    world_size: String(training.worldSize),
    dataset_interactions: String(dataset.counts.interactions),
    dataset_users: String(dataset.counts.users),
    dataset_items: String(dataset.counts.items),
    onnx_top_k: String(exported.topK),
  };
  // The resolved config (every default filled in), so a run can be reproduced from MLflow alone.
  for (const [k, v] of Object.entries(training.config ?? input.trainConfig)) params[`train.${k}`] = String(v);
  return params;
}

async function logRun(deps: ActivityDeps, run: MlflowRun, input: RegisterInput): Promise<void> {
  const { mlflow, store } = deps;
  const { training, evaluation, exported, dataset } = input;
  const metrics: Record<string, number> = {
    train_final_loss: training.finalLoss,
    train_samples_per_sec: training.samplesPerSec,
    train_seconds: training.trainSeconds,
    onnx_max_abs_diff: exported.maxAbsDiff,
    eval_users: evaluation.nUsers,
    eval_cold_users: evaluation.nColdUsers,
    ...(training.recentPrior && {
      recent_prior_beta: training.recentPrior.beta,
      recent_prior_valid_ndcg_at_10: training.recentPrior.validNdcg,
      recent_prior_base_valid_ndcg_at_10: training.recentPrior.baseValidNdcg,
    }),
  };
  for (const [k, v] of Object.entries(evaluation.model)) metrics[metricKey('', k)] = v;
  for (const [k, v] of Object.entries(evaluation.popularity)) metrics[metricKey('popularity_', k)] = v;
  metrics[`coverage_at_${evaluation.k}`] = evaluation.coverage.model;
  const novelty = evaluation.novelty.model;
  if (novelty !== null && novelty !== undefined) metrics[`novelty_at_${evaluation.k}`] = novelty;
  await mlflow.logBatch(run.info.run_id, { metrics, params: runParams(input) });

  await withTempDir('register', async (dir) => {
    const uploads: [string, string][] = [
      // A cascade's onnxUri is its manifest (the stage graphs are in the logged model's files).
      [exported.onnxUri, exported.kind === 'cascade' ? 'model/cascade.json' : 'model/model.onnx'],
      ...(input.serving.precision === 'int8'
        ? [
            [
              input.serving.onnxUri,
              exported.kind === 'cascade' ? 'model/cascade.int8.json' : 'model/model.int8.onnx',
            ] as [string, string],
          ]
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

/** Name of the version's logged model under its run (MLflow's own default for log_model). */
export const LOGGED_MODEL_NAME = 'model';

const artifactError = (message: string) => ApplicationFailure.nonRetryable(message, 'RegistryArtifactError');

/** A graph from the object store, refused unless it is the one the export (or quantization) step recorded. */
async function fetchGraph(
  deps: ActivityDeps,
  graph: { name: string; uri: string; sha256: string; topK: number },
): Promise<VersionGraph> {
  const bytes = await deps.store.getBytes(graph.uri);
  if (!bytes) throw artifactError(`${graph.name} graph ${graph.uri} is missing from the object store`);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== graph.sha256)
    throw artifactError(
      `${graph.name} graph ${graph.uri} has sha256 ${sha256}, the registry was given ${graph.sha256}`,
    );
  return { ...graph, bytes };
}

/** A cascade's stages as served: the export's, or those its quantized manifest names (fp32 or int8 per stage). */
async function servedStages(deps: ActivityDeps, input: RegisterInput): Promise<CascadeStage[]> {
  const { exported, serving } = input;
  if (serving.onnxUri === exported.onnxUri) return exported.stages ?? [];
  const bytes = await deps.store.getBytes(serving.onnxUri);
  if (!bytes) throw artifactError(`cascade manifest ${serving.onnxUri} is missing from the object store`);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== serving.sha256)
    throw artifactError(
      `cascade manifest ${serving.onnxUri} has sha256 ${sha256}, the registry was given ${serving.sha256}`,
    );
  try {
    return parseCascadeManifest(bytes.toString('utf8'), serving.onnxUri).stages;
  } catch (err) {
    throw artifactError((err as Error).message);
  }
}

/** The graphs of the version's MLflow Model: what ships for a single model, every stage (as served) for a cascade. */
async function versionGraphs(deps: ActivityDeps, input: RegisterInput): Promise<VersionModelInput> {
  const { exported } = input;
  const common = {
    family: familyOf(input.training.config),
    historyLen: exported.historyLen,
    nItems: exported.nItems,
    topK: exported.topK,
  };
  if (exported.kind !== 'cascade') {
    const { onnxUri: uri, sha256, precision } = input.serving;
    const data = await fetchGraph(deps, { name: 'model', uri, sha256, topK: exported.topK });
    return { ...common, kind: 'single', precision, data, extra: [], ...(exported.ann && { ann: exported.ann }) };
  }
  const stages = await servedStages(deps, input);
  const recall = stages.find((s) => s.name === 'recall');
  if (!recall)
    throw artifactError(
      `cascade export of ${input.model} has no recall stage (stages: ${stages.map((s) => s.name).join(', ') || 'none'})`,
    );
  const data = await fetchGraph(deps, recall);
  const extra: VersionGraph[] = [];
  for (const stage of stages.filter((s) => s !== recall)) extra.push(await fetchGraph(deps, stage));
  return { ...common, kind: 'cascade', precision: input.serving.precision, data, extra };
}

/** The run's READY logged model holding the version's MLflow Model (written now, or by an earlier attempt). */
async function logVersionModel(
  deps: ActivityDeps,
  experimentId: string,
  run: MlflowRun,
  input: RegisterInput,
): Promise<MlflowLoggedModel> {
  const ctx = Context.current();
  const graphs = await versionGraphs(deps, input);
  let model;
  try {
    model = versionModel(graphs);
  } catch (err) {
    if (err instanceof VersionModelError) throw artifactError(err.message);
    throw err;
  }
  const environment = await pythonEnvironment(deps.config.python);
  return ensureLoggedModel(deps.mlflow, {
    experimentId,
    run,
    name: LOGGED_MODEL_NAME,
    modelType: graphs.family,
    tags: { ...lineageTags(input), [TAGS.modelFamily]: graphs.family, [TAGS.onnxKind]: graphs.kind },
    params: runParams(input),
    files: (logged) => [
      ...model.graphs.map((g) => ({ path: g.path, body: g.graph.bytes })),
      ...onnxModelFiles({
        modelId: logged.info.model_id,
        runId: run.info.run_id,
        artifactUri: logged.info.artifact_uri,
        createdMs: logged.info.creation_timestamp_ms ?? 0,
        dataPath: model.dataPath,
        signature: model.signature,
        inputExample: model.inputExample,
        metadata: model.metadata,
        environment,
        graphBytes: model.graphs.reduce((sum, g) => sum + g.graph.bytes.length, 0),
      }),
    ],
    progress: (step) => ctx.heartbeat({ stage: 'model', step }),
  });
}

/** The HNSW check's outcome as a tag, when an index was built: what MLflow's UI shows beside the version. */
function annCheckTag(exported: ExportResult): Record<string, string> {
  const { ann, annRejected } = exported;
  if (ann)
    return {
      [TAGS.annCheck]:
        `recall@10 ${ann.recall.toFixed(4)} against exact search at expansionSearch ${ann.expansionSearch}` +
        (ann.graph ? ` (${ann.graph} graph)` : ''),
    };
  return annRejected ? { [TAGS.annCheck]: annRejected.slice(0, 4000) } : {};
}

async function register(deps: ActivityDeps, input: RegisterInput): Promise<RegisterResult> {
  const ctx = Context.current();
  const { mlflow } = deps;
  const experimentId = await mlflow.ensureExperiment(input.model);
  ctx.heartbeat({ stage: 'run' });
  const run = await findOrCreateRun(mlflow, experimentId, input);
  if (run.info.status !== 'FINISHED') await logRun(deps, run, input);

  ctx.heartbeat({ stage: 'version' });
  await mlflow.ensureRegisteredModel(input.model, 'Retrieval model trained by recsys continuousTraining');
  const existing = await mlflow.searchModelVersions(
    `name = ${filterValue(input.model)} and run_id = ${filterValue(run.info.run_id)}`,
  );
  let version = existing[0];
  if (!version) {
    // A new version only from a complete MLflow Model: its logged model is READY before the version exists, and the
    // version is created in one call with every tag serving reads.
    const logged = await logVersionModel(deps, experimentId, run, input);
    ctx.heartbeat({ stage: 'version' });
    const modelId = logged.info.model_id;
    version = await mlflow.createModelVersion(
      input.model,
      `models:/${modelId}`,
      run.info.run_id,
      {
        ...lineageTags(input),
        [TAGS.modelFamily]: familyOf(input.training.config),
        [TAGS.modelUri]: input.training.modelUri,
        // What serving loads and verifies: the shipped artefact (int8 or fp32) and its checksum.
        [TAGS.onnxUri]: input.serving.onnxUri,
        [TAGS.onnxSha256]: input.serving.sha256,
        [TAGS.onnxPrecision]: input.serving.precision,
        [TAGS.onnxKind]: input.exported.kind ?? 'single',
        [TAGS.topK]: String(input.exported.topK),
        [TAGS.historyLen]: String(input.exported.historyLen),
        [TAGS.fp32OnnxUri]: input.exported.onnxUri,
        [TAGS.fp32OnnxSha256]: input.exported.sha256,
        // The HNSW index that passed its check (serving uses it unless $RECSYS_RETRIEVAL=exact).
        ...(input.exported.ann && {
          [TAGS.annUri]: input.exported.ann.uri,
          [TAGS.annSha256]: input.exported.ann.sha256,
        }),
        ...annCheckTag(input.exported),
      },
      undefined,
      modelId,
    );
  }

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
    ...(input.recipeUri ? { [TAGS.trainingInputUri]: input.recipeUri } : {}),
    ...(input.cause?.driftReportUri ? { [TAGS.driftReportUri]: input.cause.driftReportUri } : {}),
  };
  for (const check of input.gates.checks)
    tags[gateTag(check.gate)] = `${check.outcome}: ${check.detail}`.slice(0, 4000);
  for (const [k, v] of Object.entries(input.quantization ?? {})) tags[quantizationTag(k)] = String(v);
  for (const [key, value] of Object.entries(tags))
    await mlflow.setModelVersionTag(input.model, version.version, key, value);

  await mlflow.setAlias(input.model, ALIASES.challenger, version.version);
  const final = await mlflow.getModelVersion(input.model, version.version);
  const base = deps.config.mlflowUrl;
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

async function lineageOf(store: ObjectStore, model: string, mv: MlflowModelVersion): Promise<ChampionRef> {
  const tags = tagsOf(mv);
  const modelUri = tags[TAGS.modelUri];
  const datasetUri = tags[TAGS.datasetUri];
  if (!modelUri || !datasetUri)
    throw ApplicationFailure.nonRetryable(
      `${model} v${mv.version} lacks the tags ${TAGS.modelUri} / ${TAGS.datasetUri}`,
      'RegistryLineageError',
    );
  const manifestAt = manifestUri(parseDatasetUri(datasetUri).uri);
  const manifest = Manifest.parse(await store.getJson(manifestAt));
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

/**
 * Points `champion` at a version and records who/what did it and the previous champion on the version's tags, so
 * the registry itself says which version served when. Idempotent: promoting the champion again changes nothing.
 */
async function promote(mlflow: MlflowClient, input: PromoteInput): Promise<PromoteResult> {
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
async function restoreChampion(mlflow: MlflowClient, input: RestoreChampionInput): Promise<{ restored: boolean }> {
  const current = await mlflow.getVersionByAlias(input.model, ALIASES.champion);
  if (current?.version !== input.version) return { restored: false };
  if (input.previousChampion) {
    await mlflow.setAlias(input.model, ALIASES.champion, input.previousChampion);
    // The restored champion serves again: it is no longer retired.
    await mlflow.deleteModelVersionTag(input.model, input.previousChampion, TAGS.retired);
  } else await mlflow.deleteAlias(input.model, ALIASES.champion);
  await mlflow.setModelVersionTag(input.model, input.version, TAGS.promoted, `reverted ${new Date().toISOString()}`);
  return { restored: true };
}

export function registryActivities(deps: ActivityDeps) {
  const { mlflow, store } = deps;
  return {
    register: (input: RegisterInput) => register(deps, input),
    /** The version behind `champion`, or undefined for a model without one (or not registered yet). */
    currentChampion: async (input: { model: string }): Promise<ChampionRef | undefined> => {
      const champion = await mlflow.getVersionByAlias(input.model, ALIASES.champion);
      return champion ? lineageOf(store, input.model, champion) : undefined;
    },
    /** A registered version with its lineage: the trained model and the dataset version it was trained on. */
    describeVersion: async (input: { model: string; version: string }): Promise<ChampionRef> => {
      return lineageOf(store, input.model, await mlflow.getModelVersion(input.model, input.version));
    },
    /** Sets tags on a version (rollout outcomes, approvals): the registry's own record of what happened to it. */
    tagVersion: async (input: TagVersionInput): Promise<void> => {
      for (const [key, value] of Object.entries(input.tags))
        await mlflow.setModelVersionTag(input.model, input.version, key, value.slice(0, 4000));
    },
    promote: (input: PromoteInput) => promote(mlflow, input),
    restoreChampion: (input: RestoreChampionInput) => restoreChampion(mlflow, input),
  };
}
