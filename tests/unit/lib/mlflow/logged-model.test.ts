/**
 * ensureLoggedModel's guarantees against an in-memory MLflow: a new model is written PENDING -> files (MLmodel last)
 * -> metrics linked -> READY -> run output; a retry reuses what the last attempt made (a READY model untouched and
 * not linked twice, an unfinished one completed); a failed upload marks the model UPLOAD_FAILED and is rethrown.
 */
import { ensureLoggedModel, type LoggedModelApi, type LogModelInput } from '../../../../lib/mlflow/logged-model';
import { LOGGED_MODEL_STATUS, type MlflowLoggedModel, type MlflowRun } from '../../../../lib/mlflow/schemas';

const run: MlflowRun = {
  info: { run_id: 'run-1', experiment_id: '7', artifact_uri: 'mlflow-artifacts:/7/run-1/artifacts' },
  data: { metrics: [{ key: 'ndcg_at_10', value: 0.31, timestamp: 1000, step: 0 }] },
};

const done = <T>(value: T) => Promise.resolve(value);

/** An MLflow with logged models, uploads and run outputs in memory; `calls` records every call in order. */
function fakeMlflow() {
  const models: MlflowLoggedModel[] = [];
  const files = new Map<string, string>();
  const outputs: string[] = [];
  const calls: string[] = [];
  let failUpload: string | undefined;
  const api: LoggedModelApi = {
    searchLoggedModels: (_exp, filter) => {
      calls.push(`search ${filter}`);
      return done(
        models.filter((m) => filter.includes(`'${m.info.source_run_id}'`) && filter.includes(`'${m.info.name}'`)),
      );
    },
    createLoggedModel: (experimentId, opts) => {
      const id = `m-${models.length + 1}`;
      calls.push(`create ${id}`);
      const model: MlflowLoggedModel = {
        info: {
          model_id: id,
          experiment_id: experimentId,
          name: opts.name,
          artifact_uri: `mlflow-artifacts:/${experimentId}/models/${id}/artifacts`,
          status: LOGGED_MODEL_STATUS.pending,
          source_run_id: opts.sourceRunId,
          creation_timestamp_ms: 5000 + models.length,
        },
      };
      models.push(model);
      return done(model);
    },
    uploadLoggedModelArtifact: (model, path, body) => {
      calls.push(`upload ${model.info.model_id}/${path}`);
      if (path === failUpload) {
        failUpload = undefined;
        return Promise.reject(new Error(`upload of ${path} failed`));
      }
      files.set(`${model.info.model_id}/${path}`, typeof body === 'string' ? body : `<${body.length} bytes>`);
      return done(undefined);
    },
    finalizeLoggedModel: (id, status) => {
      calls.push(`finalize ${id} ${status}`);
      const model = models.find((m) => m.info.model_id === id)!;
      model.info.status = status;
      return done(model);
    },
    getRun: () => done({ ...run, outputs: { model_outputs: outputs.map((model_id) => ({ model_id, step: 0 })) } }),
    logModelMetrics: (_run, id, metrics) => {
      calls.push(`metrics ${id} ${metrics.map((m) => `${m.key}=${m.value}@${m.timestamp}`).join(',')}`);
      return done(undefined);
    },
    logOutputs: (_run, ms) => {
      calls.push(`output ${ms.map((m) => m.modelId).join(',')}`);
      outputs.push(...ms.map((m) => m.modelId));
      return done(undefined);
    },
  };
  return { api, models, files, outputs, calls, failNextUploadOf: (path: string) => (failUpload = path) };
}

const input = (over: Partial<LogModelInput> = {}): LogModelInput => ({
  experimentId: '7',
  run,
  name: 'model',
  files: (m) => [
    { path: 'model.onnx', body: new Uint8Array(10) },
    { path: 'MLmodel', body: `model_id: ${m.info.model_id}` },
  ],
  ...over,
});

test('a new model: files with its own id, MLmodel last, metrics linked, READY, then the run output', async () => {
  const fake = fakeMlflow();
  const model = await ensureLoggedModel(fake.api, input());
  expect(model.info.status).toBe(LOGGED_MODEL_STATUS.ready);
  expect(fake.calls).toEqual([
    "search source_run_id = 'run-1' AND name = 'model'",
    'create m-1',
    'upload m-1/model.onnx',
    'upload m-1/MLmodel',
    'metrics m-1 ndcg_at_10=0.31@1000',
    `finalize m-1 ${LOGGED_MODEL_STATUS.ready}`,
    'output m-1',
  ]);
  expect(fake.files.get('m-1/MLmodel')).toBe('model_id: m-1');
});

test('a retry finds the READY model: nothing written again, and the run output is not recorded twice', async () => {
  const fake = fakeMlflow();
  await ensureLoggedModel(fake.api, input());
  fake.calls.length = 0;
  const again = await ensureLoggedModel(
    fake.api,
    input({
      files: () => {
        throw new Error('a READY model is not rewritten');
      },
    }),
  );
  expect(again.info.model_id).toBe('m-1');
  expect(fake.calls).toEqual(["search source_run_id = 'run-1' AND name = 'model'"]);
  expect(fake.outputs).toEqual(['m-1']);
});

test('a failed upload marks the model UPLOAD_FAILED and fails; the retry completes the same model', async () => {
  const fake = fakeMlflow();
  fake.failNextUploadOf('MLmodel');
  await expect(ensureLoggedModel(fake.api, input())).rejects.toThrow('upload of MLmodel failed');
  expect(fake.models.map((m) => m.info.status)).toEqual([LOGGED_MODEL_STATUS.failed]);
  expect(fake.outputs).toEqual([]);

  const model = await ensureLoggedModel(fake.api, input());
  expect(model.info.model_id).toBe('m-1');
  expect(fake.models).toHaveLength(1);
  expect(fake.models[0]!.info.status).toBe(LOGGED_MODEL_STATUS.ready);
  expect(fake.files.get('m-1/MLmodel')).toBe('model_id: m-1');
  expect(fake.outputs).toEqual(['m-1']);
});

test('an attempt that died with the model PENDING: the next one completes it rather than making another', async () => {
  const fake = fakeMlflow();
  await fake.api.createLoggedModel('7', { name: 'model', sourceRunId: 'run-1' });
  fake.calls.length = 0;
  await ensureLoggedModel(fake.api, input());
  expect(fake.calls).not.toContain('create m-2');
  expect(fake.calls).toContain(`finalize m-1 ${LOGGED_MODEL_STATUS.ready}`);
});

test('of several models for the run (concurrent attempts), a READY one is preferred over an older unfinished one', async () => {
  const fake = fakeMlflow();
  await fake.api.createLoggedModel('7', { name: 'model', sourceRunId: 'run-1' });
  const ready = await fake.api.createLoggedModel('7', { name: 'model', sourceRunId: 'run-1' });
  ready.info.status = LOGGED_MODEL_STATUS.ready;
  const model = await ensureLoggedModel(fake.api, input());
  expect(model.info.model_id).toBe('m-2');
  expect(fake.calls.filter((c) => c.startsWith('upload'))).toEqual([]);
});
