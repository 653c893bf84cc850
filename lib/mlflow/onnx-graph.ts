/**
 * The inputs, outputs and metadata_props of an ONNX graph, read straight from the protobuf wire format. The registry
 * writes an MLflow Model's signature from the graph it ships, not from what the export step said it exported: a graph
 * that takes timestamps, an int8 graph or a cascade stage each describe themselves. Only the few fields needed are
 * decoded; everything else (weights above all) is skipped by its length, so reading a large graph costs one pass
 * over its top-level fields. No protobuf library is needed for three small messages.
 */

/** A tensor as MLflow's signature describes it: a numpy dtype name and a shape with -1 for a dynamic dimension. */
export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
}

export interface OnnxGraphInfo {
  /** The graph's inputs that are fed at run time (initializers listed as inputs by old exporters are left out). */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** ModelProto.metadata_props, e.g. recsys.family, recsys.top_k. */
  metadata: Record<string, string>;
}

/** TensorProto.DataType -> numpy dtype name (the ones MLflow's TensorSpec accepts). */
const DTYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
};

export class OnnxGraphError extends Error {
  override readonly name = 'OnnxGraphError';
}

interface Field {
  number: number;
  /** Wire type 0: the varint's value. */
  value?: number;
  /** Wire type 2: the bytes. */
  bytes?: Uint8Array;
}

/** The fields of one message, in order; fixed-width fields are skipped (none of ours are). */
function* fields(buf: Uint8Array, where: string): Generator<Field> {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= buf.length) throw new OnnxGraphError(`${where}: truncated varint at byte ${pos}`);
      if (shift > 63) throw new OnnxGraphError(`${where}: varint longer than 10 bytes at byte ${pos}`);
      const b = buf[pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const number = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) yield { number, value: varint() };
    else if (wire === 2) {
      const len = varint();
      if (pos + len > buf.length)
        throw new OnnxGraphError(`${where}: field ${number} runs past the end (${len} bytes at byte ${pos})`);
      yield { number, bytes: buf.subarray(pos, pos + len) };
      pos += len;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new OnnxGraphError(`${where}: unsupported wire type ${wire} of field ${number} at byte ${pos}`);
  }
}

const text = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? []).toString('utf8');

/** TensorShapeProto.Dimension: dim_value (1) or dim_param (2, symbolic: dynamic). */
function dimension(buf: Uint8Array, where: string): number {
  for (const f of fields(buf, where))
    // A varint above 2^53 is a negative int64: no valid size.
    if (f.number === 1 && f.value !== undefined && f.value <= Number.MAX_SAFE_INTEGER) return f.value;
  return -1;
}

/** ValueInfoProto -> TensorSpec; only dense tensors are accepted. */
function valueInfo(buf: Uint8Array, where: string): TensorSpec {
  let name = '';
  let type: Uint8Array | undefined;
  for (const f of fields(buf, where)) {
    if (f.number === 1) name = text(f.bytes);
    else if (f.number === 2) type = f.bytes;
  }
  const at = `${where}: '${name}'`;
  let tensor: Uint8Array | undefined;
  for (const f of fields(type ?? new Uint8Array(), at)) if (f.number === 1) tensor = f.bytes;
  if (!tensor) throw new OnnxGraphError(`${at} is not a dense tensor`);
  let elemType = 0;
  let shape: number[] | undefined;
  for (const f of fields(tensor, at)) {
    if (f.number === 1) elemType = f.value ?? 0;
    else if (f.number === 2) {
      shape = [];
      for (const d of fields(f.bytes!, at)) if (d.number === 1) shape.push(dimension(d.bytes!, at));
    }
  }
  const dtype = DTYPES[elemType];
  if (!dtype) throw new OnnxGraphError(`${at} has element type ${elemType}, which an MLflow tensor spec cannot hold`);
  if (!shape) throw new OnnxGraphError(`${at} has no shape`);
  return { name, dtype, shape };
}

/** Reads the graph's inputs, outputs and metadata from the bytes of an .onnx file; `where` names it in errors. */
export function readOnnxGraph(model: Uint8Array, where: string): OnnxGraphInfo {
  let graph: Uint8Array | undefined;
  const metadata: Record<string, string> = {};
  for (const f of fields(model, where)) {
    if (f.number === 7) graph = f.bytes;
    else if (f.number === 14) {
      let key = '';
      let value = '';
      for (const e of fields(f.bytes!, where)) {
        if (e.number === 1) key = text(e.bytes);
        else if (e.number === 2) value = text(e.bytes);
      }
      metadata[key] = value;
    }
  }
  if (!graph) throw new OnnxGraphError(`${where}: no graph (is it an ONNX model?)`);
  const inputs: TensorSpec[] = [];
  const outputs: TensorSpec[] = [];
  const initializers = new Set<string>();
  for (const f of fields(graph, `${where} graph`)) {
    if (f.number === 11) inputs.push(valueInfo(f.bytes!, `${where} input`));
    else if (f.number === 12) outputs.push(valueInfo(f.bytes!, `${where} output`));
    else if (f.number === 5)
      for (const t of fields(f.bytes!, `${where} initializer`)) if (t.number === 8) initializers.add(text(t.bytes));
  }
  if (outputs.length === 0) throw new OnnxGraphError(`${where}: the graph has no outputs`);
  return { inputs: inputs.filter((i) => !initializers.has(i.name)), outputs, metadata };
}
