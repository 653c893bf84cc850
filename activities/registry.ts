/**
 * Registry activity: one MLflow run per training (params, metrics, artefacts, lineage tags) and one registered
 * model version per training, aliased `challenger`, and `champion` when it beats both the popularity baseline and
 * the current champion. Keyed by the training key, so a retried or repeated registration creates nothing twice.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { codeVersion, pythonLockSha256 } from '../lib/code-version';
import { config } from '../lib/config';
import { withTempDir } from '../lib/files';
import { MlflowClient, filterValue, tagsOf } from '../lib/mlflow/client';
import type { MlflowRun } from '../lib/mlflow/schemas';
import { objectStore } from '../lib/object-store';
import type { DatasetRef } from './etl';
import type { EvaluationResult } from './evaluation';
import type { ExportResult } from './export';
import type { TrainResult } from './training';

export const PRIMARY_METRIC = 'ndcg@10';

export interface RegisterInput {
  model: string;
  workflowId: string;
  workflowRunId: string;
  trigger: string;
  dataset: DatasetRef;
  trainConfig: Record<string, unknown>;
  training: TrainResult;
  evaluation: EvaluationResult;
  exported: ExportResult;
}

export interface RegisterResult {
  model: string;
  version: string;
  mlflowRunId: string;
  aliases: string[];
  promotedToChampion: boolean;
  decision: string;
  previousChampion?: string;
  modelUrl: string;
  runUrl: string;
}

/** MLflow metric and tag keys may not contain '@'. */
const metricKey = (prefix: string, name: string) => `${prefix}${name.replace('@', '_at_')}`;

async function findOrCreateRun(mlflow: MlflowClient, experimentId: string, input: RegisterInput): Promise<MlflowRun> {
  const key = input.training.trainingKey;
  const found = await mlflow.searchRuns([experimentId], `tags.\`recsys.training_key\` = ${filterValue(key)}`, 1);
  if (found[0]) return found[0];
  return mlflow.createRun(experimentId, `${input.model}-${input.dataset.version}-${key.slice(0, 8)}`, {
    'recsys.training_key': key,
    'recsys.temporal.workflow_id': input.workflowId,
    'recsys.temporal.run_id': input.workflowRunId,
    'recsys.trigger': input.trigger,
    'recsys.dataset.name': input.dataset.name,
    'recsys.dataset.version': input.dataset.version,
    'recsys.dataset.uri': input.dataset.uri,
    'recsys.code_version': codeVersion(),
    'recsys.python_lock_sha256': pythonLockSha256(),
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
      [evaluation.reportUri, 'evaluation/report.json'],
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
  await mlflow.ensureRegisteredModel(input.model, 'Two-tower retrieval model trained by recsys continuousTraining');
  const existing = await mlflow.searchModelVersions(
    `name = ${filterValue(input.model)} and run_id = ${filterValue(run.info.run_id)}`,
  );
  const score = input.evaluation.model[PRIMARY_METRIC] ?? NaN;
  const baseline = input.evaluation.popularity[PRIMARY_METRIC] ?? NaN;
  const version =
    existing[0] ??
    (await mlflow.createModelVersion(input.model, `${run.info.artifact_uri}/model`, run.info.run_id, {
      'recsys.training_key': input.training.trainingKey,
      'recsys.temporal.workflow_id': input.workflowId,
      'recsys.temporal.run_id': input.workflowRunId,
      'recsys.dataset.name': input.dataset.name,
      'recsys.dataset.version': input.dataset.version,
      'recsys.dataset.uri': input.dataset.uri,
      'recsys.code_version': codeVersion(),
      'recsys.onnx.uri': input.exported.onnxUri,
      'recsys.onnx.sha256': input.exported.sha256,
      'recsys.onnx.top_k': String(input.exported.topK),
      'recsys.onnx.history_len': String(input.exported.historyLen),
      'recsys.model.uri': input.training.modelUri,
      [metricKey('recsys.metric.', PRIMARY_METRIC)]: String(score),
      [metricKey('recsys.metric.popularity.', PRIMARY_METRIC)]: String(baseline),
    }));

  await mlflow.setAlias(input.model, 'challenger', version.version);

  // Champion: better than popularity and than the current champion on the primary metric.
  const champion = await mlflow.getVersionByAlias(input.model, 'champion');
  const championScore = champion ? Number(tagsOf(champion)[metricKey('recsys.metric.', PRIMARY_METRIC)] ?? NaN) : NaN;
  let promoted = false;
  let decision: string;
  if (champion?.version === version.version) {
    promoted = true;
    decision = 'already champion';
  } else if (!(score > baseline)) {
    decision = `kept as challenger: ${PRIMARY_METRIC} ${score.toFixed(4)} does not beat popularity ${baseline.toFixed(4)}`;
  } else if (champion && !(score > championScore)) {
    decision = `kept as challenger: ${PRIMARY_METRIC} ${score.toFixed(4)} does not beat champion v${champion.version} (${championScore.toFixed(4)})`;
  } else {
    promoted = true;
    decision = champion
      ? `champion: ${PRIMARY_METRIC} ${score.toFixed(4)} beats popularity ${baseline.toFixed(4)} and v${champion.version} (${championScore.toFixed(4)})`
      : `champion: ${PRIMARY_METRIC} ${score.toFixed(4)} beats popularity ${baseline.toFixed(4)} (no previous champion)`;
    if (champion)
      await mlflow.setModelVersionTag(input.model, version.version, 'recsys.previous_champion', champion.version);
    await mlflow.setAlias(input.model, 'champion', version.version);
  }
  await mlflow.setModelVersionTag(input.model, version.version, 'recsys.promotion_decision', decision);

  const final = await mlflow.getModelVersion(input.model, version.version);
  const base = config().mlflowUrl;
  return {
    model: input.model,
    version: version.version,
    mlflowRunId: run.info.run_id,
    aliases: final.aliases ?? [],
    promotedToChampion: promoted,
    decision,
    previousChampion: champion && champion.version !== version.version ? champion.version : undefined,
    modelUrl: `${base}/#/models/${encodeURIComponent(input.model)}/versions/${version.version}`,
    runUrl: `${base}/#/experiments/${experimentId}/runs/${run.info.run_id}`,
  };
}
