/**
 * The ONNX wire-format reader the registry writes MLflow signatures from: inputs, outputs (dtype, shape with -1 for
 * symbolic dimensions), metadata_props, initializers left out of the inputs, and errors that name the file and what
 * is wrong. The same bytes are opened by onnxruntime, so the reader agrees with a real ONNX implementation.
 */
import { InferenceSession } from 'onnxruntime-node';
import { OnnxGraphError, readOnnxGraph } from '../../../../lib/mlflow/onnx-graph';
import { onnxModel, retrievalGraph, sequenceInput } from './onnx-bytes';

const runnable = () =>
  onnxModel({
    inputs: [
      { name: 'history', dtype: 'int64', shape: ['batch', 5] },
      { name: 'x', dtype: 'float32', shape: ['batch', 3] },
    ],
    outputs: [
      { name: 'items', dtype: 'int64', shape: ['batch', 5] },
      { name: 'scores', dtype: 'float32', shape: ['batch', 3] },
    ],
    metadata: { 'recsys.family': 'two_tower', 'recsys.top_k': '3' },
  });

test('reads dtypes, shapes (symbolic dimensions as -1) and metadata_props, as onnxruntime sees them', async () => {
  const bytes = runnable();
  const graph = readOnnxGraph(bytes, 'm.onnx');
  expect(graph).toEqual({
    inputs: [
      { name: 'history', dtype: 'int64', shape: [-1, 5] },
      { name: 'x', dtype: 'float32', shape: [-1, 3] },
    ],
    outputs: [
      { name: 'items', dtype: 'int64', shape: [-1, 5] },
      { name: 'scores', dtype: 'float32', shape: [-1, 3] },
    ],
    metadata: { 'recsys.family': 'two_tower', 'recsys.top_k': '3' },
  });
  const session = await InferenceSession.create(bytes);
  try {
    expect(session.inputNames).toEqual(graph.inputs.map((i) => i.name));
    expect(session.outputNames).toEqual(graph.outputs.map((o) => o.name));
    for (const meta of session.inputMetadata) {
      const spec = graph.inputs.find((i) => i.name === meta.name)!;
      expect(meta.isTensor && meta.type).toBe(spec.dtype);
      expect(meta.isTensor && meta.shape.map((d) => (typeof d === 'number' ? d : -1))).toEqual(spec.shape);
    }
  } finally {
    await session.release();
  }
});

test('initializers that an old exporter lists as inputs are not inputs', () => {
  const bytes = onnxModel({
    inputs: [{ name: 'history', dtype: 'int64', shape: ['batch', 4] }],
    outputs: [{ name: 'items', dtype: 'int64', shape: ['batch', 4] }],
    initializers: ['item_matrix', 'bias'],
    initializersAsInputs: true,
  });
  expect(readOnnxGraph(bytes, 'm.onnx').inputs.map((i) => i.name)).toEqual(['history']);
});

test('a dimension without a size (an empty symbolic name) is dynamic', () => {
  const bytes = onnxModel({
    inputs: [{ name: 'history', dtype: 'int64', shape: ['', 4] }],
    outputs: [{ name: 'items', dtype: 'int64', shape: ['batch', 4] }],
  });
  expect(readOnnxGraph(bytes, 'm.onnx').inputs[0]!.shape).toEqual([-1, 4]);
});

test('a retrieval graph with a fixed history length and K', () => {
  const graph = readOnnxGraph(retrievalGraph(20, 10), 'm.onnx');
  expect(graph.inputs).toEqual([{ name: 'history', dtype: 'int64', shape: [-1, 20] }]);
  expect(graph.outputs.map((o) => [o.name, o.dtype, o.shape])).toEqual([
    ['scores', 'float32', [-1, 10]],
    ['items', 'int64', [-1, 10]],
  ]);
});

describe('errors name the file and the problem', () => {
  test('an input that is not a tensor', () => {
    const bytes = onnxModel({
      inputs: [{ name: 'history', dtype: 'int64', shape: ['batch', 4] }],
      outputs: [{ name: 'items', dtype: 'int64', shape: ['batch', 4] }],
      rawInputs: [sequenceInput('events')],
    });
    expect(() => readOnnxGraph(bytes, 's3://b/m.onnx')).toThrow("s3://b/m.onnx input: 'events' is not a dense tensor");
  });

  test('a truncated file', () => {
    const bytes = runnable();
    const err = (() => {
      try {
        readOnnxGraph(bytes.subarray(0, bytes.length - 7), 'cut.onnx');
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a failure');
    })();
    expect(err).toBeInstanceOf(OnnxGraphError);
    expect(err.message).toMatch(/^cut\.onnx/);
  });

  test('bytes that are not an ONNX model', () => {
    expect(() => readOnnxGraph(Buffer.from('{"kind":"cascade"}'), 'manifest.json')).toThrow(/^manifest\.json: /);
  });

  test('a model without a graph', () => {
    expect(() => readOnnxGraph(Uint8Array.from([8, 8]), 'empty.onnx')).toThrow(
      'empty.onnx: no graph (is it an ONNX model?)',
    );
  });
});
