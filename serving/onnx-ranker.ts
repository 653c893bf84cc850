/**
 * One ONNX retrieval graph in onnxruntime-node: history int64 [batch, L] -> scores float32 [batch, K] (best first)
 * and items int64 [batch, K] (1-based indices), as models/export.py writes it. Checked before it serves: names,
 * types and shapes against the registry tags, then warm-up inferences whose outputs must make sense.
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import type { Catalog } from './catalog';
import { ModelLoadError, messageOf } from './errors';
import { encodeRequest } from './history';
import { MicroBatcher } from './micro-batcher';

export const INPUT = 'history';
/** The time-aware families' extra inputs (models/continuous_time.py): item times [batch, L] and request time [batch]. */
export const INPUT_TIMESTAMPS = 'timestamps';
export const INPUT_QUERY_TIME = 'query_time';
export const OUTPUT_SCORES = 'scores';
export const OUTPUT_ITEMS = 'items';

export interface TopK {
  /** Best first. */
  scores: Float32Array;
  /** 1-based item indices, in the order of `scores`. */
  items: BigInt64Array;
  /** How a multi-stage model produced it (serving/cascade-ranker.ts); absent for a single graph. */
  trace?: RankTrace;
}

/** One stage of a ranking: which graph ran (its sha256, the lineage) and how long it took. */
export interface StageTiming {
  name: string;
  graphSha256: string;
  ms: number;
}

/**
 * The route a request took through a cascade (serving/router.ts) and the stages that ran, in order; `single` for a
 * single model served in stages (serving/ann-ranker.ts: user graph, then the HNSW index).
 */
export interface RankTrace {
  route: 'cheap' | 'cascade' | 'cheap-budget' | 'single';
  stages: StageTiming[];
}

/** When a history's items happened and when the request came, epoch ms; times undefined when unknown. */
export interface HistoryTime {
  times?: ArrayLike<number>;
  nowMs: number;
}

/** What the request path needs from a model; the ONNX implementation below, fakes in unit tests. */
export interface Ranker {
  readonly historyLen: number;
  readonly topK: number;
  /**
   * Ranks the catalogue for the history indices[0..n) (oldest first; only the last historyLen are used). `time`:
   * the epoch ms of those items (times[0..n)) and of the request, for graphs that take them (models/continuous_time.py).
   */
  rank(indices: ArrayLike<number>, n: number, time?: HistoryTime): Promise<TopK>;
  dispose(): Promise<void>;
}

/** The graph inputs of a batch of encodeRequest rows: history [B, L] (and timestamps [B, L], query_time [B]). */
export function batchFeeds(rows: BigInt64Array[], L: number, takesTime: boolean): Record<string, ort.Tensor> {
  const B = rows.length;
  const history = new BigInt64Array(B * L);
  rows.forEach((row, i) => history.set(row.subarray(0, L), i * L));
  const feeds: Record<string, ort.Tensor> = { [INPUT]: new ort.Tensor('int64', history, [B, L]) };
  if (takesTime) {
    const times = new BigInt64Array(B * L);
    const query = new BigInt64Array(B);
    rows.forEach((row, i) => {
      times.set(row.subarray(L, 2 * L), i * L);
      query[i] = row[2 * L]!;
    });
    feeds[INPUT_TIMESTAMPS] = new ort.Tensor('int64', times, [B, L]);
    feeds[INPUT_QUERY_TIME] = new ort.Tensor('int64', query, [B]);
  }
  return feeds;
}

/** Requests that queue while the graph is busy run together, up to this many per inference. */
const MAX_BATCH = 64;
/** Graphs that cannot batch run this many single-request inferences at once (onnxruntime's thread pool). */
const UNBATCHED_IN_FLIGHT = 4;

/**
 * Whether requests may share an inference. A graph that quantizes its activations dynamically (int8 export,
 * DynamicQuantizeLinear) computes one scale per input tensor: in a batch, a request's scores would depend on the
 * requests beside it. Those graphs run one request per inference, so an answer never depends on the load.
 */
export function batchable(onnxBytes: Uint8Array): boolean {
  return !Buffer.from(onnxBytes.buffer, onnxBytes.byteOffset, onnxBytes.byteLength).includes('DynamicQuantizeLinear');
}

function describe(meta: ort.InferenceSession.ValueMetadata | undefined): string {
  if (!meta) return 'nothing';
  if (!meta.isTensor) return `'${meta.name}' (not a tensor)`;
  return `'${meta.name}' ${meta.type} [${meta.shape.join(', ')}]`;
}

/** A dimension matches when it is the expected size or symbolic (a named dimension such as `batch`). */
const dimIs = (dim: number | string | undefined, size: number) => typeof dim === 'string' || dim === size;

export class OnnxRanker implements Ranker {
  private readonly batcher: MicroBatcher<BigInt64Array, TopK>;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly historyLen: number,
    readonly topK: number,
    readonly batches: boolean,
    /** The graph also takes `timestamps` and `query_time`: each row then carries them after the history. */
    readonly takesTime: boolean,
  ) {
    // Batching: one inference at a time (one intra-op thread), concurrent requests batch behind it.
    this.batcher = batches
      ? new MicroBatcher((rows) => this.runBatch(rows), MAX_BATCH, 1)
      : new MicroBatcher((rows) => this.runBatch(rows), 1, UNBATCHED_IN_FLIGHT);
  }

  /** Opens the graph and checks its signature against the registry's history_len (L) and top_k (K). */
  static async open(model: string, file: string, expected: { historyLen: number; topK: number }): Promise<OnnxRanker> {
    let session: ort.InferenceSession;
    try {
      // One intra-op thread: requests are tiny and concurrent; parallelism comes from more processes.
      session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    } catch (err) {
      throw new ModelLoadError(model, 'session', `onnxruntime cannot open the graph: ${messageOf(err)}`, {
        cause: err,
      });
    }
    const problem = OnnxRanker.signatureProblem(session, expected);
    if (problem) {
      await session.release();
      throw new ModelLoadError(model, 'signature', problem);
    }
    const takesTime = session.inputNames.includes(INPUT_TIMESTAMPS);
    return new OnnxRanker(session, expected.historyLen, expected.topK, batchable(await readFile(file)), takesTime);
  }

  private static signatureProblem(
    session: ort.InferenceSession,
    { historyLen: L, topK: K }: { historyLen: number; topK: number },
  ): string | undefined {
    const input = session.inputMetadata.find((m) => m.name === INPUT);
    const scores = session.outputMetadata.find((m) => m.name === OUTPUT_SCORES);
    const items = session.outputMetadata.find((m) => m.name === OUTPUT_ITEMS);
    const takes = session.inputMetadata.map(describe).join(', ');
    const timed = session.inputNames.length === 3;
    if (
      !(session.inputNames.length === 1 || timed) ||
      !input?.isTensor ||
      input.type !== 'int64' ||
      input.shape.length !== 2
    )
      return `expected the input '${INPUT}' int64 [batch, ${L}] (and for a time-aware graph '${INPUT_TIMESTAMPS}' int64 [batch, ${L}], '${INPUT_QUERY_TIME}' int64 [batch]); the graph takes ${takes}`;
    if (timed) {
      const ts = session.inputMetadata.find((m) => m.name === INPUT_TIMESTAMPS);
      const q = session.inputMetadata.find((m) => m.name === INPUT_QUERY_TIME);
      if (!ts?.isTensor || ts.type !== 'int64' || ts.shape.length !== 2 || !dimIs(ts.shape[1], L))
        return `expected input '${INPUT_TIMESTAMPS}' int64 [batch, ${L}]; the graph takes ${takes}`;
      if (!q?.isTensor || q.type !== 'int64' || q.shape.length !== 1)
        return `expected input '${INPUT_QUERY_TIME}' int64 [batch]; the graph takes ${takes}`;
    }
    if (!dimIs(input.shape[1], L))
      return `input '${INPUT}' has length ${input.shape[1]}, but the tag recsys.onnx.history_len says ${L}`;
    for (const [meta, name, type] of [
      [scores, OUTPUT_SCORES, 'float32'],
      [items, OUTPUT_ITEMS, 'int64'],
    ] as const) {
      if (!meta?.isTensor || meta.type !== type || meta.shape.length !== 2)
        return `expected output '${name}' ${type} [batch, ${K}]; the graph returns ${session.outputMetadata.map(describe).join(', ')}`;
      if (!dimIs(meta.shape[1], K))
        return `output '${name}' has ${meta.shape[1]} columns, but the tag recsys.onnx.top_k says ${K}`;
    }
    return undefined;
  }

  /**
   * Runs the graph on an empty history and on a full one; fails unless each returns K distinct catalogue indices
   * with finite scores, best first. Also pays the first-inference cost before real traffic does.
   */
  async warmUp(model: string, catalog: Catalog): Promise<void> {
    const full = Int32Array.from({ length: this.historyLen }, (_, i) => (i % catalog.nItems) + 1);
    for (const [what, n] of [
      ['an empty history', 0],
      ['a full history', full.length],
    ] as const) {
      let out: TopK;
      try {
        out = await this.rank(full, n);
      } catch (err) {
        throw new ModelLoadError(model, 'warmup', `inference on ${what} failed: ${messageOf(err)}`, { cause: err });
      }
      const problem = outputProblem(out, this.topK, catalog.nItems);
      if (problem) throw new ModelLoadError(model, 'warmup', `inference on ${what}: ${problem}`);
    }
  }

  rank(indices: ArrayLike<number>, n: number, time?: HistoryTime): Promise<TopK> {
    return this.batcher.submit(encodeRequest(indices, n, this.historyLen, this.takesTime, time));
  }

  /** One inference over a batch of encoded histories; each request gets views of its own output rows. */
  private async runBatch(rows: BigInt64Array[]): Promise<TopK[]> {
    const L = this.historyLen;
    const out = await this.session.run(batchFeeds(rows, L, this.takesTime));
    const scores = out[OUTPUT_SCORES]!.data as Float32Array;
    const items = out[OUTPUT_ITEMS]!.data as BigInt64Array;
    const K = this.topK;
    return rows.map((_, i) => ({
      scores: scores.subarray(i * K, (i + 1) * K),
      items: items.subarray(i * K, (i + 1) * K),
    }));
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** What is wrong with a graph's output for one history, or undefined when it is well-formed. */
export function outputProblem(out: TopK, k: number, nItems: number): string | undefined {
  // By tag rather than instanceof: typed arrays from native code may come from another realm (jest's vm contexts).
  if (out.scores?.[Symbol.toStringTag] !== 'Float32Array' || out.items?.[Symbol.toStringTag] !== 'BigInt64Array')
    return 'outputs are not float32 scores and int64 items';
  if (out.scores.length !== k || out.items.length !== k)
    return `expected ${k} scores and items, got ${out.scores.length} and ${out.items.length}`;
  const seen = new Set<bigint>();
  for (let j = 0; j < k; j++) {
    const item = out.items[j]!;
    if (item < 1n || item > BigInt(nItems)) return `item index ${item} at rank ${j} is outside 1..${nItems}`;
    if (seen.has(item)) return `item index ${item} appears twice`;
    seen.add(item);
    const s = out.scores[j]!;
    if (!Number.isFinite(s)) return `score at rank ${j} is ${s}`;
    if (j > 0 && s > out.scores[j - 1]!) return `scores are not sorted best first (rank ${j})`;
  }
  return undefined;
}
