/**
 * What the MLflow Model of a registered version holds, decided from its ONNX graphs: the graph the `onnx` flavor
 * loads (the single retrieval graph that ships, or a cascade's recall stage), the cascade's other stage graphs as
 * extra files, the signature read from the loaded graph, a left-padded input example, and metadata naming every
 * graph with its checksum and object-store URI (and the HNSW index's manifest, when the version has one). The graph
 * must be the one the export step described (history length, top-K): a disagreement is an artefact error, never a
 * model registered with a wrong schema.
 */
import type { HnswGraph } from '../ann-manifest';
import type { InputExample, ModelSignature } from './mlmodel';
import { readOnnxGraph, type OnnxGraphInfo, type TensorSpec } from './onnx-graph';

/** One ONNX graph of a version, downloaded and checked against its recorded sha256. */
export interface VersionGraph {
  /** `model` for a single graph; `recall`, `rank`, `rerank` for a cascade's stages. */
  name: string;
  /** The graph's bytes. */
  bytes: Uint8Array;
  /** Where it lives in the object store. */
  uri: string;
  sha256: string;
  /** How many items it returns: K, or a stage's N / M / K. */
  topK: number;
}

export interface VersionModelInput {
  kind: 'single' | 'cascade';
  family: string;
  /** Of the graph the flavor loads. */
  precision: string;
  historyLen: number;
  nItems: number;
  /** K: the length of the final list. */
  topK: number;
  /** The graph the onnx flavor loads: the single graph, or the cascade's recall stage. */
  data: VersionGraph;
  /** The cascade's other stage graphs, in order (none for a single graph). */
  extra: VersionGraph[];
  /** The HNSW index a single model serves through, when it has one (activities/contracts.ts ExportResult.ann). */
  ann?: { uri: string; sha256: string; recall: number; expansionSearch: number; graph?: HnswGraph };
}

export interface VersionModel {
  /** The files of the model directory that are graphs, the flavor's data first. */
  graphs: { path: string; graph: VersionGraph; info: OnnxGraphInfo }[];
  dataPath: string;
  signature: ModelSignature;
  inputExample: InputExample;
  metadata: Record<string, unknown>;
}

/** The graphs of a version cannot make its MLflow Model: the export step and the graph disagree, or a graph is bad. */
export class VersionModelError extends Error {
  override readonly name = 'VersionModelError';
}

export const DATA_PATH = 'model.onnx';
const stagePath = (name: string) => `stages/${name}.onnx`;

/** A fixed, plausible moment for the example's timestamps (epoch ms), so the example is the same on every retry. */
const EXAMPLE_EPOCH_MS = 1_700_000_000_000;
const EXAMPLE_GAP_MS = 3_600_000;

const shapeText = (s: TensorSpec) => `${s.dtype} [${s.shape.join(', ')}]`;

/** `spec` is `dtype` [-1, n] where the dimension may be dynamic (-1) but, when fixed, must be `n`. */
function expectMatrix(
  graph: OnnxGraphInfo,
  side: 'input' | 'output',
  name: string,
  dtype: string,
  n: number,
  where: string,
) {
  const spec = (side === 'input' ? graph.inputs : graph.outputs).find((s) => s.name === name);
  if (!spec) {
    const names = (side === 'input' ? graph.inputs : graph.outputs).map((s) => s.name).join(', ');
    throw new VersionModelError(`${where}: no ${side} '${name}' (${side}s: ${names || 'none'})`);
  }
  const [, width] = spec.shape;
  if (spec.dtype !== dtype || spec.shape.length !== 2 || (width !== -1 && width !== n))
    throw new VersionModelError(
      `${where}: ${side} '${name}' is ${shapeText(spec)}, the export step recorded ${dtype} [batch, ${n}]`,
    );
}

/**
 * A one-user example: the most recent history left-padded with 0 (items 1..3, the most recent last), the same
 * positions timestamped an hour apart when the graph takes timestamps, and the query an hour after the last one.
 */
export function inputExample(inputs: TensorSpec[], historyLen: number, nItems: number, where: string): InputExample {
  const n = Math.max(0, Math.min(3, historyLen, nItems));
  const pad = historyLen - n;
  const history = [...Array<number>(pad).fill(0), ...Array.from({ length: n }, (_, i) => i + 1)];
  const times = history.map((item, i) => (item === 0 ? 0 : EXAMPLE_EPOCH_MS + (i - pad) * EXAMPLE_GAP_MS));
  const values: Record<string, unknown[]> = {
    history: [history],
    timestamps: [times],
    query_time: [EXAMPLE_EPOCH_MS + n * EXAMPLE_GAP_MS],
  };
  const example: InputExample = {};
  for (const input of inputs) {
    const value = values[input.name];
    if (!value)
      throw new VersionModelError(
        `${where}: no input example for input '${input.name}' ${shapeText(input)} (known: ${Object.keys(values).join(', ')})`,
      );
    example[input.name] = value;
  }
  return example;
}

/** The MLflow Model of a version: which graph goes where, its signature, example and metadata. */
export function versionModel(input: VersionModelInput): VersionModel {
  const where = (g: VersionGraph) => `${g.name} graph ${g.uri}`;
  const read = (g: VersionGraph) => {
    try {
      return readOnnxGraph(g.bytes, where(g));
    } catch (err) {
      throw new VersionModelError((err as Error).message);
    }
  };
  const data = read(input.data);
  expectMatrix(data, 'input', 'history', 'int64', input.historyLen, where(input.data));
  expectMatrix(data, 'output', 'scores', 'float32', input.data.topK, where(input.data));
  expectMatrix(data, 'output', 'items', 'int64', input.data.topK, where(input.data));
  const graphs = [
    { path: DATA_PATH, graph: input.data, info: data },
    ...input.extra.map((g) => {
      const info = read(g);
      expectMatrix(info, 'input', 'history', 'int64', input.historyLen, where(g));
      return { path: stagePath(g.name), graph: g, info };
    }),
  ];
  const metadata = {
    recsys: {
      kind: input.kind,
      family: input.family,
      precision: input.precision,
      history_len: input.historyLen,
      n_items: input.nItems,
      top_k: input.topK,
      // Every graph of the version: the flavor loads the first; serving runs them all for a cascade.
      graphs: graphs.map(({ path, graph, info }) => ({
        name: graph.name,
        path,
        sha256: graph.sha256,
        bytes: graph.bytes.length,
        top_k: graph.topK,
        source_uri: graph.uri,
        inputs: info.inputs.map((s) => s.name),
        outputs: info.outputs.map((s) => s.name),
      })),
      // By reference: the index (hundreds of MiB at a million items) and its user graph stay in the object store,
      // named with their checksums by this manifest (lib/ann-manifest.ts); the flavor's graph is the exact fallback.
      ...(input.ann && {
        ann: {
          manifest_uri: input.ann.uri,
          manifest_sha256: input.ann.sha256,
          'recall@10': input.ann.recall,
          expansion_search: input.ann.expansionSearch,
          graph: input.ann.graph ?? 'ip',
        },
      }),
    },
  };
  return {
    graphs,
    dataPath: DATA_PATH,
    signature: { inputs: data.inputs, outputs: data.outputs },
    inputExample: inputExample(data.inputs, input.historyLen, input.nItems, where(input.data)),
    metadata,
  };
}
