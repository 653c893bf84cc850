/**
 * A registered version is an MLflow Model, against the real MLflow and object store: a tiny model is built by the
 * real `etl`, `train` and `exportOnnx` activities and registered by the real `register` activity. The version's
 * source is a READY LoggedModel of the training run whose MLmodel (read through the route MLflow's UI uses) has the
 * onnx flavor and a signature with the `history` input; MLflow's own Python tools load `models:/<name>/<version>`
 * and predict K items from the logged input example. A registration that fails while writing the model leaves no
 * version, and the retry completes the same logged model; registering again changes nothing.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { load } from 'js-yaml';
import { MockActivityEnvironment } from '@temporalio/testing';
import type {
  EtlInput,
  EvaluationResult,
  ExportResult,
  RegisterInput,
  RegisterResult,
  TrainResult,
} from '../../activities/contracts';
import { defaultDeps } from '../../activities/deps';
import { etlActivities } from '../../activities/etl';
import { exportActivities } from '../../activities/export';
import { LOGGED_MODEL_NAME, registryActivities } from '../../activities/registry';
import { trainingActivities } from '../../activities/training';
import { config } from '../../lib/config';
import type { DatasetVersion } from '../../lib/dataset/ref';
import { filterValue, MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { LOGGED_MODEL_STATUS, type MlflowLoggedModel } from '../../lib/mlflow/schemas';
import { TAGS } from '../../lib/mlflow/tags';
import { objectStore } from '../../lib/object-store';
import { smallDatasetSource } from './training-fixture';
import { uniqueName } from './stack';

const deps = defaultDeps();
const mlflow = deps.mlflow;
const store = objectStore();
const env = () => new MockActivityEnvironment();

/** An MLflow client whose upload of `MLmodel` fails, like a connection lost in the middle of writing the model. */
class FailingMlflow extends MlflowClient {
  override async uploadLoggedModelArtifact(
    ...args: Parameters<MlflowClient['uploadLoggedModelArtifact']>
  ): Promise<void> {
    if (args[1] === 'MLmodel') throw new Error('connection reset while uploading MLmodel');
    return super.uploadLoggedModelArtifact(...args);
  }
}

let input: RegisterInput;
let dataset: DatasetVersion;
let training: TrainResult;
let exported: ExportResult;

beforeAll(async () => {
  const name = uniqueName('it-mlm');
  const source = await smallDatasetSource(name);
  const etlInput: EtlInput = {
    name,
    sources: [source],
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  };
  const etl = (i: EtlInput) => etlActivities(deps).etl(i);
  dataset = await env().run(etl, etlInput);
  const { train } = trainingActivities(deps);
  training = await env().run(train, {
    model: uniqueName('it-mlmodel'),
    dataset,
    config: { embedding_dim: 16, hidden_dim: 32, history_len: 20, batch_size: 256, epochs: 1, lr: 0.01 },
    nprocPerNode: 1,
  });
  const { exportOnnx } = exportActivities(deps);
  exported = await env().run(exportOnnx, { training, topK: 20 });

  // The evaluation's figures are not what this test is about: a small report stands in for the evaluate step's.
  const reportUri = `s3://${config().bucket}/it/${name}/report.json`;
  const tableUri = `s3://${config().bucket}/it/${name}/report.md`;
  await store.putJson(reportUri, { note: 'integration test stand-in' });
  await store.putBytes(tableUri, '| metric | value |\n|---|---|\n| ndcg@10 | 0.2 |\n', 'text/markdown');
  const figures = { 'ndcg@10': 0.2, 'recall@10': 0.3 };
  const evaluation: EvaluationResult = {
    reportUri,
    tableUri,
    k: 10,
    ks: [10],
    model: figures,
    popularity: { 'ndcg@10': 0.1, 'recall@10': 0.2 },
    nUsers: 100,
    nColdUsers: 10,
    intervals: { model: {}, popularity: {} },
    differences: { vsPopularity: {} },
    slices: {},
    coverage: { model: 0.5, popularity: 0.1 },
    novelty: { model: 7, popularity: 5 },
    bootstrap: { nResamples: 100, confidence: 0.95, seed: 1 },
    reused: false,
  };
  input = {
    model: uniqueName('it-mlmodel'),
    workflowId: 'it-mlflow-model',
    workflowRunId: 'run-1',
    trigger: 'manual',
    dataset,
    trainConfig: training.config,
    training,
    evaluation,
    exported,
    serving: { onnxUri: exported.onnxUri, sha256: exported.sha256, precision: 'fp32' },
    gates: { passed: false, checks: [], summary: 'integration test: not gated' },
  };
});

async function loggedModelsOfRun(runId: string): Promise<MlflowLoggedModel[]> {
  const experimentId = await mlflow.ensureExperiment(input.model);
  return mlflow.searchLoggedModels(
    [experimentId],
    `source_run_id = ${filterValue(runId)} AND name = ${filterValue(LOGGED_MODEL_NAME)}`,
  );
}

/** Loads the version with MLflow's own Python tools and predicts its input example. */
async function loadWithMlflow(model: string, version: string) {
  const script = `
import json, sys
import mlflow.onnx, mlflow.pyfunc
uri = sys.argv[1]
graph = mlflow.onnx.load_model(uri)
pyfunc = mlflow.pyfunc.load_model(uri)
example = pyfunc.input_example
out = pyfunc.predict(example)
print(json.dumps({
    "graph_inputs": [i.name for i in graph.graph.input],
    "example_history": example["history"].tolist(),
    "items": out["items"].tolist(),
    "scores": out["scores"].tolist(),
    "signature_inputs": [s.name for s in pyfunc.metadata.get_input_schema().inputs],
}))
`;
  const { stdout } = await promisify(execFile)(config().python, ['-c', script, `models:/${model}/${version}`], {
    env: { ...process.env, MLFLOW_TRACKING_URI: config().mlflowUrl, OMP_NUM_THREADS: '1' },
    timeout: 180_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as {
    graph_inputs: string[];
    example_history: number[][];
    items: number[][];
    scores: number[][];
    signature_inputs: string[];
  };
}

test('a registration that fails while writing the model leaves no version; the retry completes the same model', async () => {
  const failing = registryActivities({ ...deps, mlflow: new FailingMlflow(config().mlflowUrl) });
  await expect(env().run(failing.register, input)).rejects.toThrow('connection reset while uploading MLmodel');
  const versions = await mlflow.searchModelVersions(`name = ${filterValue(input.model)}`);
  expect(versions).toEqual([]);
  const [run] = await mlflow.searchRuns(
    [await mlflow.ensureExperiment(input.model)],
    `tags.\`${TAGS.trainingKey}\` = ${filterValue(training.trainingKey)}`,
  );
  const [failed, ...more] = await loggedModelsOfRun(run!.info.run_id);
  expect(more).toEqual([]);
  expect(failed!.info.status).toBe(LOGGED_MODEL_STATUS.failed);

  const { register } = registryActivities(deps);
  const registered: RegisterResult = await env().run(register, input);
  const [logged, ...others] = await loggedModelsOfRun(registered.mlflowRunId);
  expect(others).toEqual([]);
  expect(logged!.info.model_id).toBe(failed!.info.model_id);
  expect(logged!.info.status).toBe(LOGGED_MODEL_STATUS.ready);

  const version = await mlflow.getModelVersion(input.model, registered.version);
  expect(version.source).toBe(`models:/${logged!.info.model_id}`);
  expect(version.run_id).toBe(registered.mlflowRunId);
  // The tags serving reads are written as before, with the version itself.
  expect(tagsOf(version)).toMatchObject({
    [TAGS.onnxUri]: exported.onnxUri,
    [TAGS.onnxSha256]: exported.sha256,
    [TAGS.onnxPrecision]: 'fp32',
    [TAGS.topK]: String(exported.topK),
    [TAGS.historyLen]: String(exported.historyLen),
    [TAGS.trainingKey]: training.trainingKey,
  });
  // MLflow links the logged model to the version, and the run to the model it produced.
  const linked = JSON.parse(
    tagsOf(await mlflow.getLoggedModel(logged!.info.model_id).then((m) => m.info))['mlflow.modelVersions']!,
  ) as { name: string; version: number | string }[];
  expect(linked.map((v) => [v.name, String(v.version)])).toEqual([[input.model, registered.version]]);
  const run2 = await mlflow.getRun(registered.mlflowRunId);
  expect(run2.outputs?.model_outputs?.map((o) => o.model_id)).toEqual([logged!.info.model_id]);

  // Registering again (a retried activity, the same training judged again) creates nothing.
  const again: RegisterResult = await env().run(register, input);
  expect(again.version).toBe(registered.version);
  expect(await loggedModelsOfRun(registered.mlflowRunId)).toHaveLength(1);
  expect(await mlflow.searchModelVersions(`name = ${filterValue(input.model)}`)).toHaveLength(1);
});

test("the version's MLmodel has the onnx flavor and the signature MLflow's UI shows", async () => {
  const [version] = await mlflow.searchModelVersions(`name = ${filterValue(input.model)}`);
  const text = await mlflow.getModelVersionArtifact(input.model, version!.version, 'MLmodel');
  const mlmodel = load(text) as {
    flavors: { onnx: { data: string }; python_function: { loader_module: string } };
    signature: { inputs: string; outputs: string };
    saved_input_example_info: { artifact_path: string };
  };
  expect(mlmodel.flavors.onnx.data).toBe('model.onnx');
  expect(mlmodel.flavors.python_function.loader_module).toBe('mlflow.onnx');
  expect(JSON.parse(mlmodel.signature.inputs)).toEqual([
    { name: 'history', type: 'tensor', 'tensor-spec': { dtype: 'int64', shape: [-1, exported.historyLen] } },
  ]);
  expect(JSON.parse(mlmodel.signature.outputs)).toEqual([
    { name: 'scores', type: 'tensor', 'tensor-spec': { dtype: 'float32', shape: [-1, exported.topK] } },
    { name: 'items', type: 'tensor', 'tensor-spec': { dtype: 'int64', shape: [-1, exported.topK] } },
  ]);
  expect(mlmodel.saved_input_example_info.artifact_path).toBe('input_example.json');
});

test("MLflow's own tools load the version and predict K items from its input example", async () => {
  const [version] = await mlflow.searchModelVersions(`name = ${filterValue(input.model)}`);
  const loaded = await loadWithMlflow(input.model, version!.version);
  expect(loaded.graph_inputs).toEqual(['history']);
  expect(loaded.signature_inputs).toEqual(['history']);
  const [history] = loaded.example_history;
  expect(history).toHaveLength(exported.historyLen);
  expect(history!.slice(-3)).toEqual([1, 2, 3]);
  expect(history!.slice(0, -3).every((i) => i === 0)).toBe(true);
  const [items] = loaded.items;
  expect(items).toHaveLength(exported.topK);
  // 1-based item indices, distinct, within the catalogue; scores best first.
  expect(new Set(items).size).toBe(exported.topK);
  expect(items!.every((i) => i >= 1 && i <= exported.nItems)).toBe(true);
  const [scores] = loaded.scores;
  expect(scores).toEqual([...scores!].sort((a, b) => b - a));
});
