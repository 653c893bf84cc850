/**
 * A tiny real HNSW version for the unit tests of serving/ann-ranker.ts and the loader's fallback: item embeddings
 * E (row j = item j + 1), a runnable user graph (history int64 [B, L] -> Gather from [0; E] -> ReduceSum over the
 * history -> user float32 [B, d]: the sum of the history's item vectors, padding 0 adds nothing), the matching exact
 * graph (user @ E^T -> TopK -> scores, items = index + 1), a saved usearch index and its manifest. The ONNX files are
 * encoded here as protobuf bytes (field numbers of onnx.proto), so the tests need no Python.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AnnManifest } from '../../../lib/ann-manifest';
import { buildHnsw } from '../../../serving/retrieval';
import { clusteredItems } from '../../data/embeddings';

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
const bytes = (field: number, b: ArrayLike<number>) => [...tag(field, 2), ...varint(b.length), ...Array.from(b)];
const str = (field: number, s: string) => bytes(field, [...Buffer.from(s, 'utf8')]);

const FLOAT = 1;
const INT64 = 7;

/** TensorProto with raw little-endian data. */
function tensor(name: string, dims: number[], type: number, data: Float32Array | BigInt64Array): number[] {
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return [...dims.flatMap((d) => int(1, d)), ...int(2, type), ...str(8, name), ...bytes(9, raw)];
}

/** NodeProto; attributes are INT (type 2). */
function node(op: string, inputs: string[], outputs: string[], attrs: Record<string, number> = {}): number[] {
  return [
    ...inputs.flatMap((i) => str(1, i)),
    ...outputs.flatMap((o) => str(2, o)),
    ...str(4, op),
    ...Object.entries(attrs).flatMap(([name, i]) => bytes(5, [...str(1, name), ...int(3, i), ...int(20, 2)])),
  ];
}

function valueInfo(name: string, type: number, shape: (number | string)[]): number[] {
  const dims = shape.flatMap((d) => bytes(1, typeof d === 'number' ? int(1, d) : str(2, d)));
  return [...str(1, name), ...bytes(2, bytes(1, [...int(1, type), ...bytes(2, dims)]))];
}

function model(nodes: number[][], inits: number[][], inputs: number[][], outputs: number[][], opset = 17): Uint8Array {
  const graph = [
    ...nodes.flatMap((n) => bytes(1, n)),
    ...str(2, 'g'),
    ...inits.flatMap((t) => bytes(5, t)),
    ...inputs.flatMap((v) => bytes(11, v)),
    ...outputs.flatMap((v) => bytes(12, v)),
  ];
  return Uint8Array.from([
    ...int(1, 8),
    ...str(2, 'recsys-test'),
    ...bytes(7, graph),
    ...bytes(8, [...str(1, ''), ...int(2, opset)]),
  ]);
}

/** history int64 [batch, L] -> user float32 [batch, d] = the sum of the history's rows of E (0 = padding). */
export function userGraph(E: Float32Array, dims: number, L: number): Uint8Array {
  const padded = new Float32Array(E.length + dims);
  padded.set(E, dims);
  return model(
    [
      node('Gather', ['table', 'history'], ['gathered']),
      node('ReduceSum', ['gathered', 'axes'], ['user'], { keepdims: 0 }),
    ],
    [tensor('table', [padded.length / dims, dims], FLOAT, padded), tensor('axes', [1], INT64, BigInt64Array.of(1n))],
    [valueInfo('history', INT64, ['batch', L])],
    [valueInfo('user', FLOAT, ['batch', dims])],
  );
}

/** The exact graph of the same model: scores = user @ E^T, top K (no history mask: enough for the loader's checks). */
export function exactGraph(E: Float32Array, dims: number, L: number, K: number): Uint8Array {
  const n = E.length / dims;
  const padded = new Float32Array(E.length + dims);
  padded.set(E, dims);
  const transposed = new Float32Array(E.length);
  for (let j = 0; j < n; j++) for (let d = 0; d < dims; d++) transposed[d * n + j] = E[j * dims + d]!;
  return model(
    [
      node('Gather', ['table', 'history'], ['gathered']),
      node('ReduceSum', ['gathered', 'axes'], ['user'], { keepdims: 0 }),
      node('MatMul', ['user', 'items_t'], ['all']),
      node('TopK', ['all', 'k'], ['scores', 'columns'], { axis: 1, largest: 1, sorted: 1 }),
      node('Add', ['columns', 'one'], ['items']),
    ],
    [
      tensor('table', [n + 1, dims], FLOAT, padded),
      tensor('axes', [1], INT64, BigInt64Array.of(1n)),
      tensor('items_t', [dims, n], FLOAT, transposed),
      tensor('k', [1], INT64, BigInt64Array.of(BigInt(K))),
      tensor('one', [], INT64, BigInt64Array.of(1n)),
    ],
    [valueInfo('history', INT64, ['batch', L])],
    [valueInfo('scores', FLOAT, ['batch', K]), valueInfo('items', INT64, ['batch', K])],
  );
}

export interface AnnFixture {
  dir: string;
  E: Float32Array;
  dims: number;
  nItems: number;
  historyLen: number;
  files: { user: string; index: string; manifest: string; exact: string };
  manifest: AnnManifest;
  sha: { user: string; index: string; manifest: string; exact: string };
}

const sha256 = async (file: string) =>
  createHash('sha256')
    .update(await fs.readFile(file))
    .digest('hex');

/** Writes the fixture's files into `dir`; URIs are `s3://b/v/<file>` (a fake store maps them back). */
export async function writeAnnFixture(
  dir: string,
  opts: { nItems?: number; dims?: number; historyLen?: number; topK?: number } = {},
): Promise<AnnFixture> {
  const { nItems = 300, dims = 8, historyLen = 4, topK = 5 } = opts;
  const E = clusteredItems({ items: nItems, dims, clusters: 6, seed: 3 });
  const files = {
    user: path.join(dir, 'user.onnx'),
    index: path.join(dir, 'items.usearch'),
    manifest: path.join(dir, 'ann.json'),
    exact: path.join(dir, 'model.onnx'),
  };
  await fs.writeFile(files.user, userGraph(E, dims, historyLen));
  await fs.writeFile(files.exact, exactGraph(E, dims, historyLen, topK));
  const params = { connectivity: 8, expansionAdd: 64, expansionSearch: 64 };
  await buildHnsw(E, dims, params, 1).save(files.index);
  const file = async (f: string) => ({
    uri: `s3://b/v/${path.basename(f)}`,
    sha256: await sha256(f),
    bytes: (await fs.stat(f)).size,
  });
  const manifest: AnnManifest = {
    kind: 'hnsw',
    dims,
    nItems,
    historyLen,
    metric: 'ip',
    graph: 'ip',
    params,
    check: { k: 10, target: 0.99, recall: 1, queries: 100 },
    user: await file(files.user),
    index: await file(files.index),
  };
  await fs.writeFile(files.manifest, JSON.stringify(manifest));
  return {
    dir,
    E,
    dims,
    nItems,
    historyLen,
    files,
    manifest,
    sha: {
      user: manifest.user.sha256,
      index: manifest.index.sha256,
      manifest: await sha256(files.manifest),
      exact: await sha256(files.exact),
    },
  };
}

/** The sum of the history's item vectors (the user graph's output) and its inner product with every item. */
export function exactScores(f: Pick<AnnFixture, 'E' | 'dims' | 'nItems'>, history: number[]): Float64Array {
  const user = new Float64Array(f.dims);
  for (const item of history) for (let d = 0; d < f.dims; d++) user[d]! += f.E[(item - 1) * f.dims + d]!;
  const scores = new Float64Array(f.nItems);
  for (let j = 0; j < f.nItems; j++) {
    let s = 0;
    for (let d = 0; d < f.dims; d++) s += user[d]! * f.E[j * f.dims + d]!;
    scores[j] = s;
  }
  return scores;
}
