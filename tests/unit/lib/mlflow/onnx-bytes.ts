/**
 * Builds small ONNX models as protobuf bytes for the tests of lib/mlflow's graph reader: Identity graphs whose inputs
 * and outputs are chosen by the test, with initializers and metadata_props. onnxruntime accepts them, so the reader is
 * checked against real ONNX files, not only against this encoder.
 */

const ELEM: Record<string, number> = { float32: 1, int64: 7, int32: 6, bool: 9, float64: 11 };

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

const tag = (field: number, wire: number) => varint(field * 8 + wire);
const int = (field: number, n: number) => [...tag(field, 0), ...varint(n)];
const bytes = (field: number, b: number[] | Uint8Array) => [...tag(field, 2), ...varint(b.length), ...b];
const str = (field: number, s: string) => bytes(field, [...Buffer.from(s, 'utf8')]);

export interface TensorDecl {
  name: string;
  dtype: string;
  /** A number is a fixed size, a string a symbolic (dynamic) dimension. */
  shape: (number | string)[];
}

function valueInfo(t: TensorDecl): number[] {
  const dims = t.shape.flatMap((d) => bytes(1, typeof d === 'number' ? int(1, d) : str(2, d)));
  const tensor = [...int(1, ELEM[t.dtype]!), ...bytes(2, dims)];
  return [...str(1, t.name), ...bytes(2, bytes(1, tensor))];
}

/** A sequence-typed value (not a tensor), to test that the reader refuses it. */
export function sequenceInput(name: string): number[] {
  const elem = bytes(1, int(1, 1));
  return [...str(1, name), ...bytes(2, bytes(4, bytes(1, elem)))];
}

export interface ModelDecl {
  inputs: TensorDecl[];
  /** Each output is an Identity of the input at the same position (or of the first one). */
  outputs: TensorDecl[];
  /** float32 initializers [1] by name; listed as graph inputs too when `initializersAsInputs`. */
  initializers?: string[];
  initializersAsInputs?: boolean;
  metadata?: Record<string, string>;
  /** Raw ValueInfoProto bytes appended to the inputs. */
  rawInputs?: number[][];
}

export function onnxModel(m: ModelDecl): Uint8Array {
  const nodes = m.outputs.flatMap((o, i) =>
    bytes(1, [...str(1, (m.inputs[i] ?? m.inputs[0]!).name), ...str(2, o.name), ...str(4, 'Identity')]),
  );
  const inits = (m.initializers ?? []).flatMap((name) =>
    // TensorProto: dims=1 [1], data_type=2 float, float_data=4 (packed), name=8
    bytes(5, [...int(1, 1), ...int(2, 1), ...bytes(4, [0, 0, 128, 63]), ...str(8, name)]),
  );
  const initInputs = m.initializersAsInputs
    ? (m.initializers ?? []).flatMap((name) => bytes(11, valueInfo({ name, dtype: 'float32', shape: [1] })))
    : [];
  const graph = [
    ...nodes,
    ...str(2, 'g'),
    ...inits,
    ...m.inputs.flatMap((t) => bytes(11, valueInfo(t))),
    ...initInputs,
    ...(m.rawInputs ?? []).flatMap((raw) => bytes(11, raw)),
    ...m.outputs.flatMap((t) => bytes(12, valueInfo(t))),
  ];
  const model = [
    ...int(1, 8), // ir_version
    ...str(2, 'recsys-test'),
    ...bytes(7, graph),
    ...bytes(8, [...str(1, ''), ...int(2, 17)]), // opset_import ai.onnx 17
    ...Object.entries(m.metadata ?? {}).flatMap(([k, v]) => bytes(14, [...str(1, k), ...str(2, v)])),
  ];
  return Uint8Array.from(model);
}

/**
 * The retrieval graph's declared signature: history int64 [batch, L] (+ `extraInputs`) -> scores float32 [batch, K],
 * items int64 [batch, K]. Declarations only (its Identity nodes do not type-check): for the reader, not for running.
 */
export function retrievalGraph(historyLen: number | string, topK: number | string, extraInputs: TensorDecl[] = []) {
  return onnxModel({
    inputs: [{ name: 'history', dtype: 'int64', shape: ['batch', historyLen] }, ...extraInputs],
    outputs: [
      { name: 'scores', dtype: 'float32', shape: ['batch', topK] },
      { name: 'items', dtype: 'int64', shape: ['batch', topK] },
    ],
  });
}
