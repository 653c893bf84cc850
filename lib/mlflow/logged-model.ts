/**
 * Logs an MLflow 3 LoggedModel under a run, the way `mlflow.<flavor>.log_model` does over REST: the model is created
 * PENDING, its files are uploaded to its own artefact root, the run's metrics are linked to it, it is finalized READY
 * and recorded as an output of the run. READY is the commit point: only a READY model is ever registered, and a retry
 * finds the model the last attempt made (by run and name) instead of making another: a READY one is returned as it
 * is, an unfinished one gets its files (re)written, the same bytes, and is finalized. An attempt that fails while
 * uploading marks the model UPLOAD_FAILED (what MLflow's UI shows) and the next attempt completes it.
 */
import { filterValue, type MlflowClient } from './client';
import { LOGGED_MODEL_STATUS, type MlflowLoggedModel, type MlflowRun } from './schemas';

/** The calls this module makes (a narrower type than the client, so tests can count them). */
export type LoggedModelApi = Pick<
  MlflowClient,
  | 'searchLoggedModels'
  | 'createLoggedModel'
  | 'uploadLoggedModelArtifact'
  | 'finalizeLoggedModel'
  | 'getRun'
  | 'logModelMetrics'
  | 'logOutputs'
>;

/** A file of the model directory: text written here, or bytes (a graph). */
export interface LoggedModelFile {
  path: string;
  body: string | Uint8Array;
}

export interface LogModelInput {
  experimentId: string;
  /** The run that produced the model. */
  run: MlflowRun;
  /** The logged model's name (MLflow forbids / : . % and quotes in it). */
  name: string;
  modelType?: string;
  tags?: Record<string, string>;
  params?: Record<string, string>;
  /**
   * The model directory's files for the logged model being written (its id, root and creation time go into the
   * MLmodel), in upload order: the `MLmodel` last.
   */
  files: (model: MlflowLoggedModel) => LoggedModelFile[] | Promise<LoggedModelFile[]>;
  /** Called before each step (heartbeats). */
  progress?: (step: string) => void;
}

const isReady = (m: MlflowLoggedModel) => m.info.status === LOGGED_MODEL_STATUS.ready;

/** The run's logged model of this name from an earlier attempt: a READY one first, else the oldest. */
async function earlierAttempt(mlflow: LoggedModelApi, input: LogModelInput): Promise<MlflowLoggedModel | undefined> {
  const found = await mlflow.searchLoggedModels(
    [input.experimentId],
    `source_run_id = ${filterValue(input.run.info.run_id)} AND name = ${filterValue(input.name)}`,
  );
  const oldestFirst = [...found].sort(
    (a, b) => (a.info.creation_timestamp_ms ?? 0) - (b.info.creation_timestamp_ms ?? 0),
  );
  return oldestFirst.find(isReady) ?? oldestFirst[0];
}

/** The run's metrics as the model's too (MLflow's log_model does the same), so its model page lists them. */
async function linkMetrics(mlflow: LoggedModelApi, runId: string, modelId: string): Promise<void> {
  const run = await mlflow.getRun(runId);
  const metrics = (run.data?.metrics ?? []).map((m) => ({
    key: m.key,
    value: m.value,
    timestamp: m.timestamp ?? Date.now(),
    step: m.step ?? 0,
  }));
  if (metrics.length > 0) await mlflow.logModelMetrics(runId, modelId, metrics);
}

/** Records the model as the run's output unless it already is (MLflow would record it twice). */
async function linkOutput(mlflow: LoggedModelApi, runId: string, modelId: string): Promise<void> {
  const run = await mlflow.getRun(runId);
  if (run.outputs?.model_outputs?.some((o) => o.model_id === modelId)) return;
  await mlflow.logOutputs(runId, [{ modelId, step: 0 }]);
}

/** The run's READY logged model of `input.name`, written now or by an earlier attempt. */
export async function ensureLoggedModel(mlflow: LoggedModelApi, input: LogModelInput): Promise<MlflowLoggedModel> {
  const runId = input.run.info.run_id;
  input.progress?.('find');
  let model = await earlierAttempt(mlflow, input);
  if (!model || !isReady(model)) {
    model ??= await mlflow.createLoggedModel(input.experimentId, {
      name: input.name,
      sourceRunId: runId,
      modelType: input.modelType,
      tags: input.tags,
      params: input.params,
    });
    const modelId = model.info.model_id;
    try {
      for (const file of await input.files(model)) {
        input.progress?.(`upload ${file.path}`);
        await mlflow.uploadLoggedModelArtifact(model, file.path, file.body);
      }
      await linkMetrics(mlflow, runId, modelId);
      model = await mlflow.finalizeLoggedModel(modelId, LOGGED_MODEL_STATUS.ready);
    } catch (err) {
      // Best effort: the UI should not show a model still "pending" that no one is writing; a retry completes it.
      await mlflow.finalizeLoggedModel(modelId, LOGGED_MODEL_STATUS.failed).catch(() => undefined);
      throw err;
    }
  }
  input.progress?.('link');
  await linkOutput(mlflow, runId, model.info.model_id);
  return model;
}
