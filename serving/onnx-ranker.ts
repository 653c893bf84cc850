/**
 * One ONNX retrieval graph in onnxruntime-node: history int64 [batch, L] -> scores float32 [batch, K] (best first)
 * and items int64 [batch, K] (1-based indices), as models/export.py writes it. Checked before it serves: names,
 * types and shapes against the registry tags, then warm-up inferences whose outputs must make sense.
 */
import * as ort from 'onnxruntime-node';
import type { Catalog } from './catalog';
import { ModelLoadError, messageOf } from './errors';
import { encodeHistory } from './history';

export const INPUT = 'history';
export const OUTPUT_SCORES = 'scores';
export const OUTPUT_ITEMS = 'items';

export interface TopK {
  /** Best first. */
  scores: Float32Array;
  /** 1-based item indices, in the order of `scores`. */
  items: BigInt64Array;
}

/** What the request path needs from a model; the ONNX implementation below, fakes in unit tests. */
export interface Ranker {
  readonly historyLen: number;
  readonly topK: number;
  /** Ranks the catalogue for the history indices[0..n) (oldest first; only the last historyLen are used). */
  rank(indices: ArrayLike<number>, n: number): Promise<TopK>;
  dispose(): Promise<void>;
}

interface InputSlot {
  row: BigInt64Array;
  feeds: Record<string, ort.Tensor>;
}

/** Pooled input tensors kept for reuse; more than this many concurrent requests allocate (and drop) extras. */
const MAX_POOLED_INPUTS = 256;

function describe(meta: ort.InferenceSession.ValueMetadata | undefined): string {
  if (!meta) return 'nothing';
  if (!meta.isTensor) return `'${meta.name}' (not a tensor)`;
  return `'${meta.name}' ${meta.type} [${meta.shape.join(', ')}]`;
}

/** A dimension matches when it is the expected size or symbolic (a named dimension such as `batch`). */
const dimIs = (dim: number | string | undefined, size: number) => typeof dim === 'string' || dim === size;

export class OnnxRanker implements Ranker {
  private readonly pool: InputSlot[] = [];

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly historyLen: number,
    readonly topK: number,
  ) {}

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
    return new OnnxRanker(session, expected.historyLen, expected.topK);
  }

  private static signatureProblem(
    session: ort.InferenceSession,
    { historyLen: L, topK: K }: { historyLen: number; topK: number },
  ): string | undefined {
    const input = session.inputMetadata.find((m) => m.name === INPUT);
    const scores = session.outputMetadata.find((m) => m.name === OUTPUT_SCORES);
    const items = session.outputMetadata.find((m) => m.name === OUTPUT_ITEMS);
    if (session.inputNames.length !== 1 || !input?.isTensor || input.type !== 'int64' || input.shape.length !== 2)
      return `expected one input '${INPUT}' int64 [batch, ${L}]; the graph takes ${session.inputMetadata.map(describe).join(', ')}`;
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

  async rank(indices: ArrayLike<number>, n: number): Promise<TopK> {
    // onnxruntime-node reads the input when the run actually starts (on a later turn of the event loop), so each
    // in-flight request needs its own input buffer: they come from a pool instead of being allocated per request.
    const slot = this.pool.pop() ?? this.newSlot();
    try {
      encodeHistory(indices, n, slot.row);
      const out = await this.session.run(slot.feeds);
      return { scores: out[OUTPUT_SCORES]!.data as Float32Array, items: out[OUTPUT_ITEMS]!.data as BigInt64Array };
    } finally {
      if (this.pool.length < MAX_POOLED_INPUTS) this.pool.push(slot);
    }
  }

  private newSlot(): InputSlot {
    const row = new BigInt64Array(this.historyLen);
    return { row, feeds: { [INPUT]: new ort.Tensor('int64', row, [1, this.historyLen]) } };
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
