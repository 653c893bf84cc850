/**
 * The MLflow Model of a registered version, decided from its graphs (lib/mlflow/version-model.ts) and written as
 * MLflow's files (lib/mlflow/mlmodel.ts): the signature is the shipped graph's, the example a left-padded history
 * (with timestamps for a time-aware graph), a cascade's other stages are extra files listed in the metadata, a graph
 * that disagrees with the export's figures is refused, and the files are MLflow's format, byte-identical on a retry.
 */
import { load } from 'js-yaml';
import { MLMODEL, onnxModelFiles, type OnnxModelDescription } from '../../../../lib/mlflow/mlmodel';
import {
  DATA_PATH,
  versionModel,
  VersionModelError,
  type VersionGraph,
  type VersionModelInput,
} from '../../../../lib/mlflow/version-model';
import { retrievalGraph } from './onnx-bytes';

const L = 6;
const K = 4;
const graph = (name: string, bytes: Uint8Array, topK = K): VersionGraph => ({
  name,
  bytes,
  uri: `s3://recsys/training/m/${name}.onnx`,
  sha256: name.padEnd(64, '0'),
  topK,
});
const single = (bytes = retrievalGraph(L, K), over: Partial<VersionModelInput> = {}): VersionModelInput => ({
  kind: 'single',
  family: 'two_tower',
  precision: 'fp32',
  historyLen: L,
  nItems: 50,
  topK: K,
  data: graph('model', bytes),
  extra: [],
  ...over,
});

describe('single graph', () => {
  test('signature from the graph, a left-padded example, the graph listed in the metadata', () => {
    const m = versionModel(single());
    expect(m.dataPath).toBe(DATA_PATH);
    expect(m.graphs.map((g) => g.path)).toEqual(['model.onnx']);
    expect(m.signature).toEqual({
      inputs: [{ name: 'history', dtype: 'int64', shape: [-1, L] }],
      outputs: [
        { name: 'scores', dtype: 'float32', shape: [-1, K] },
        { name: 'items', dtype: 'int64', shape: [-1, K] },
      ],
    });
    expect(m.inputExample).toEqual({ history: [[0, 0, 0, 1, 2, 3]] });
    expect(m.metadata).toEqual({
      recsys: expect.objectContaining({ kind: 'single', family: 'two_tower', history_len: L, top_k: K, n_items: 50 }),
    });
    const [listed] = (m.metadata.recsys as { graphs: Record<string, unknown>[] }).graphs;
    expect(listed).toEqual({
      name: 'model',
      path: 'model.onnx',
      sha256: 'model'.padEnd(64, '0'),
      bytes: retrievalGraph(L, K).length,
      top_k: K,
      source_uri: 's3://recsys/training/m/model.onnx',
      inputs: ['history'],
      outputs: ['scores', 'items'],
    });
  });

  test('an HNSW index is named in the metadata by its manifest, its files left in the object store', () => {
    const ann = {
      uri: 's3://recsys/training/m/ann-0123.json',
      sha256: 'a'.repeat(64),
      recall: 0.997,
      expansionSearch: 64,
    };
    const m = versionModel(single(undefined, { ann: { ...ann, graph: 'angular' } }));
    expect((m.metadata.recsys as { ann: unknown }).ann).toEqual({
      manifest_uri: ann.uri,
      manifest_sha256: ann.sha256,
      'recall@10': 0.997,
      expansion_search: 64,
      graph: 'angular',
    });
    expect(m.graphs.map((g) => g.path)).toEqual(['model.onnx']);
    // Without an index, no `ann` at all; an index from before the angular graph was an inner-product one.
    expect(versionModel(single()).metadata.recsys).not.toHaveProperty('ann');
    expect((versionModel(single(undefined, { ann })).metadata.recsys as { ann: { graph: string } }).ann.graph).toBe(
      'ip',
    );
  });

  test('a catalogue smaller than the example uses the items it has', () => {
    expect(versionModel(single(undefined, { nItems: 2 })).inputExample).toEqual({ history: [[0, 0, 0, 0, 1, 2]] });
  });

  test('dynamic dimensions are accepted as they are', () => {
    const m = versionModel(single(retrievalGraph('len', 'k')));
    expect(m.signature.inputs[0]!.shape).toEqual([-1, -1]);
    expect(m.inputExample.history).toEqual([[0, 0, 0, 1, 2, 3]]);
  });

  test('a graph that takes timestamps gets them in its example, aligned with the history, and a query time', () => {
    const bytes = retrievalGraph(L, K, [
      { name: 'timestamps', dtype: 'int64', shape: ['batch', L] },
      { name: 'query_time', dtype: 'int64', shape: ['batch'] },
    ]);
    const m = versionModel(single(bytes, { family: 'ode_rnn' }));
    expect(m.signature.inputs.map((i) => i.name)).toEqual(['history', 'timestamps', 'query_time']);
    const [history] = m.inputExample.history as number[][];
    const [times] = m.inputExample.timestamps as number[][];
    const [query] = m.inputExample.query_time as number[];
    expect(times!.map((t, i) => (t === 0) === (history![i] === 0))).toEqual(Array(L).fill(true));
    const stamped = times!.filter((t) => t > 0);
    expect(stamped).toEqual([...stamped].sort((a, b) => a - b));
    expect(stamped.length).toBe(3);
    expect(query).toBeGreaterThan(stamped.at(-1)!);
    // Epoch milliseconds (the graph's unit), not seconds.
    expect(query).toBeGreaterThan(1e12);
  });
});

describe('a graph that disagrees with the export is refused, naming it', () => {
  test.each([
    [
      'history length',
      retrievalGraph(L + 1, K),
      `input 'history' is int64 [-1, ${L + 1}], the export step recorded int64 [batch, ${L}]`,
    ],
    [
      'K',
      retrievalGraph(L, K + 2),
      `output 'scores' is float32 [-1, ${K + 2}], the export step recorded float32 [batch, ${K}]`,
    ],
  ])('%s', (_what, bytes, message) => {
    expect(() => versionModel(single(bytes))).toThrow(VersionModelError);
    expect(() => versionModel(single(bytes))).toThrow(`model graph s3://recsys/training/m/model.onnx: ${message}`);
  });

  test('an input no example can be made for', () => {
    const bytes = retrievalGraph(L, K, [{ name: 'user_features', dtype: 'float32', shape: ['batch', 8] }]);
    expect(() => versionModel(single(bytes))).toThrow(
      "no input example for input 'user_features' float32 [-1, 8] (known: history, timestamps, query_time)",
    );
  });

  test('bytes that are not a graph (a cascade manifest given as a single graph)', () => {
    expect(() => versionModel(single(Buffer.from('{"kind":"cascade"}')))).toThrow(VersionModelError);
  });
});

describe('cascade', () => {
  const N = 30;
  const M = 10;
  const cascade = (): VersionModelInput => ({
    ...single(),
    kind: 'cascade',
    family: 'cascade',
    data: graph('recall', retrievalGraph(L, N), N),
    extra: [graph('rank', retrievalGraph(L, M), M), graph('rerank', retrievalGraph(L, K), K)],
  });

  test('the recall graph is the flavor data and the signature; the other stages are extra files, listed in order', () => {
    const m = versionModel(cascade());
    expect(m.graphs.map((g) => [g.graph.name, g.path])).toEqual([
      ['recall', 'model.onnx'],
      ['rank', 'stages/rank.onnx'],
      ['rerank', 'stages/rerank.onnx'],
    ]);
    expect(m.signature.outputs.map((o) => o.shape)).toEqual([
      [-1, N],
      [-1, N],
    ]);
    const meta = m.metadata.recsys as { kind: string; top_k: number; graphs: { name: string; top_k: number }[] };
    expect(meta.kind).toBe('cascade');
    expect(meta.top_k).toBe(K);
    expect(meta.graphs.map((g) => [g.name, g.top_k])).toEqual([
      ['recall', N],
      ['rank', M],
      ['rerank', K],
    ]);
  });

  test('a stage graph with another history length is refused', () => {
    const c = cascade();
    c.extra[0] = graph('rank', retrievalGraph(L + 2, M), M);
    expect(() => versionModel(c)).toThrow(`rank graph s3://recsys/training/m/rank.onnx: input 'history' is int64`);
  });
});

/** The parts of a parsed MLmodel the tests look into. */
interface MlmodelDoc {
  flavors: { onnx: unknown; python_function: unknown };
  signature: { inputs: string; outputs: string; params: unknown };
  saved_input_example_info: unknown;
  model_size_bytes: number;
}

describe('MLflow files', () => {
  const m = versionModel(single());
  const description: OnnxModelDescription = {
    modelId: 'm-0123',
    runId: 'r-1',
    artifactUri: 'mlflow-artifacts:/7/models/m-0123/artifacts',
    createdMs: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
    dataPath: m.dataPath,
    signature: m.signature,
    inputExample: m.inputExample,
    metadata: m.metadata,
    environment: {
      python: '3.11.7',
      packages: {
        mlflow: '3.17.2',
        numpy: '2.4.6',
        onnx: '1.23.2',
        onnxruntime: '1.31.1',
        pip: '23.2.1',
        setuptools: '84.2.1',
      },
    },
    graphBytes: 1000,
  };
  const files = onnxModelFiles(description);
  const file = (p: string) => files.find((f) => f.path === p)!.body;

  test('the MLmodel comes last, after every file it names', () => {
    expect(files.map((f) => f.path)).toEqual([
      'requirements.txt',
      'python_env.yaml',
      'conda.yaml',
      'input_example.json',
      'serving_input_example.json',
      MLMODEL,
    ]);
  });

  test('MLmodel: the onnx and python_function flavors over the graph, the signature, the example, ids', () => {
    const doc = load(file(MLMODEL)) as MlmodelDoc;
    expect(doc.flavors.onnx).toEqual({
      code: null,
      data: 'model.onnx',
      onnx_session_options: null,
      onnx_version: '1.23.2',
      providers: ['CPUExecutionProvider'],
    });
    expect(doc.flavors.python_function).toEqual({
      data: 'model.onnx',
      env: { conda: 'conda.yaml', virtualenv: 'python_env.yaml' },
      loader_module: 'mlflow.onnx',
      python_version: '3.11.7',
    });
    expect(JSON.parse(doc.signature.inputs)).toEqual([
      { name: 'history', type: 'tensor', 'tensor-spec': { dtype: 'int64', shape: [-1, L] } },
    ]);
    expect((JSON.parse(doc.signature.outputs) as { name: string }[]).map((o) => o.name)).toEqual(['scores', 'items']);
    expect(doc.signature.params).toBeNull();
    expect(doc.saved_input_example_info).toEqual({
      artifact_path: 'input_example.json',
      serving_input_path: 'serving_input_example.json',
      type: 'ndarray',
    });
    expect(doc).toMatchObject({
      artifact_path: description.artifactUri,
      model_id: 'm-0123',
      model_uuid: 'm-0123',
      run_id: 'r-1',
      mlflow_version: '3.17.2',
      utc_time_created: '2026-01-02 03:04:05.678000',
      metadata: m.metadata,
    });
    expect(doc.model_size_bytes).toBe(
      1000 + Buffer.byteLength(file('input_example.json')) + Buffer.byteLength(file('serving_input_example.json')),
    );
  });

  test('the examples and the environment files', () => {
    expect(JSON.parse(file('input_example.json'))).toEqual({ history: [[0, 0, 0, 1, 2, 3]] });
    expect(JSON.parse(file('serving_input_example.json'))).toEqual({ inputs: { history: [[0, 0, 0, 1, 2, 3]] } });
    expect(file('requirements.txt')).toBe('mlflow==3.17.2\nnumpy==2.4.6\nonnx==1.23.2\nonnxruntime==1.31.1\n');
    expect(load(file('python_env.yaml'))).toEqual({
      python: '3.11.7',
      build_dependencies: ['pip==23.2.1', 'setuptools==84.2.1'],
      dependencies: ['-r requirements.txt'],
    });
    expect(load(file('conda.yaml'))).toEqual({
      channels: ['conda-forge'],
      dependencies: [
        'python=3.11.7',
        'pip<=23.2.1',
        { pip: ['mlflow==3.17.2', 'numpy==2.4.6', 'onnx==1.23.2', 'onnxruntime==1.31.1'] },
      ],
      name: 'mlflow-env',
    });
  });

  test('the same description gives the same bytes (a retried upload rewrites identical files)', () => {
    expect(onnxModelFiles({ ...description })).toEqual(files);
  });
});
