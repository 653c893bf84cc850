/**
 * A single-model version served through its HNSW index (lib/ann-manifest.ts) instead of the exact top-K graph: the
 * user-tower graph (onnxruntime-node) turns the history into the user vector, the index returns the items with the
 * highest inner products, and the history window's own items are dropped, as the exact graph masks them. So the answer
 * is the exact graph's, up to the index's recall (checked >= 0.99 @10 at export). Checked before it serves: the user
 * graph's inputs and output against the manifest and the version's tags, the index file's metric, dims and size
 * (serving/retrieval/hnsw.ts), and warm-up answers on the catalogue. Concurrent requests batch as OnnxRanker's do.
 */
import * as ort from 'onnxruntime-node';
import type { AnnManifest } from '../lib/ann-manifest';
import type { Catalog } from './catalog';
import { ModelLoadError, messageOf } from './errors';
import { encodeRequest } from './history';
import { MicroBatcher } from './micro-batcher';
import {
  batchFeeds,
  INPUT,
  INPUT_QUERY_TIME,
  INPUT_TIMESTAMPS,
  outputProblem,
  type HistoryTime,
  type Ranker,
  type StageTiming,
  type TopK,
} from './onnx-ranker';
import { HnswIndex } from './retrieval';

/** The user graph's output (models/ann_export.py). */
export const OUTPUT_USER = 'user';
/** The score the exact graph gives the history's items (models/masking.py): they rank after every other item. */
export const MASKED_SCORE = -1e9;

const MAX_BATCH = 64;

/** A dimension matches when it is the expected size or symbolic (a named dimension such as `batch`). */
const dimIs = (dim: number | string | undefined, size: number) => typeof dim === 'string' || dim === size;

function describe(session: ort.InferenceSession, which: 'inputMetadata' | 'outputMetadata'): string {
  return session[which]
    .map((m) => (m.isTensor ? `'${m.name}' ${m.type} [${m.shape.join(', ')}]` : `'${m.name}' (not a tensor)`))
    .join(', ');
}

/** What is wrong with a user graph's signature for this manifest, or undefined. */
export function userGraphProblem(session: ort.InferenceSession, m: AnnManifest): string | undefined {
  const L = m.historyLen;
  const takes = describe(session, 'inputMetadata');
  const timed = session.inputNames.length === 3;
  const want: [string, number][] = timed
    ? [
        [INPUT, 2],
        [INPUT_TIMESTAMPS, 2],
        [INPUT_QUERY_TIME, 1],
      ]
    : [[INPUT, 2]];
  if (!(session.inputNames.length === 1 || timed))
    return `expected the input '${INPUT}' int64 [batch, ${L}] (and for a time-aware graph '${INPUT_TIMESTAMPS}', '${INPUT_QUERY_TIME}'); the graph takes ${takes}`;
  for (const [name, rank] of want) {
    const meta = session.inputMetadata.find((x) => x.name === name);
    if (!meta?.isTensor || meta.type !== 'int64' || meta.shape.length !== rank)
      return `expected input '${name}' int64 of rank ${rank}; the graph takes ${takes}`;
    if (rank === 2 && !dimIs(meta.shape[1], L))
      return `input '${name}' has length ${meta.shape[1]}, but the manifest's historyLen is ${L}`;
  }
  const out = session.outputMetadata.find((x) => x.name === OUTPUT_USER);
  if (session.outputNames.length !== 1 || !out?.isTensor || out.type !== 'float32' || out.shape.length !== 2)
    return `expected one output '${OUTPUT_USER}' float32 [batch, ${m.dims}]; the graph returns ${describe(session, 'outputMetadata')}`;
  if (!dimIs(out.shape[1], m.dims))
    return `output '${OUTPUT_USER}' has ${out.shape[1]} columns, but the manifest's dims is ${m.dims}`;
  return undefined;
}

export class AnnRanker implements Ranker {
  readonly historyLen: number;
  private readonly batcher: MicroBatcher<BigInt64Array, TopK>;
  private readonly takesTime: boolean;

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly index: HnswIndex,
    private readonly manifest: AnnManifest,
    readonly topK: number,
  ) {
    this.historyLen = manifest.historyLen;
    this.takesTime = session.inputNames.includes(INPUT_TIMESTAMPS);
    // One user-graph inference and one index search at a time; requests that arrive meanwhile batch behind them.
    this.batcher = new MicroBatcher((rows) => this.runBatch(rows), MAX_BATCH, 1);
  }

  /**
   * Opens the user graph and the index and checks them against the manifest and the version's tags (history_len L,
   * top_k K); fails with a ModelLoadError naming what does not match. Releases what it opened when it fails.
   */
  static async open(
    model: string,
    files: { user: string; index: string },
    manifest: AnnManifest,
    expected: { historyLen: number; topK: number },
  ): Promise<AnnRanker> {
    if (manifest.historyLen !== expected.historyLen)
      throw new ModelLoadError(
        model,
        'signature',
        `HNSW manifest says historyLen ${manifest.historyLen}, the tag recsys.onnx.history_len says ${expected.historyLen}`,
      );
    if (expected.topK > manifest.nItems)
      throw new ModelLoadError(
        model,
        'signature',
        `top_k ${expected.topK} is more than the index's ${manifest.nItems} items`,
      );
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(files.user, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    } catch (err) {
      throw new ModelLoadError(model, 'session', `user graph: onnxruntime cannot open it: ${messageOf(err)}`, {
        cause: err,
      });
    }
    const problem = userGraphProblem(session, manifest);
    if (problem) {
      await session.release();
      throw new ModelLoadError(model, 'signature', `user graph: ${problem}`);
    }
    let index: HnswIndex;
    try {
      index = await HnswIndex.load(files.index, manifest.dims, manifest.params, manifest.nItems);
    } catch (err) {
      await session.release();
      throw new ModelLoadError(model, 'session', messageOf(err), { cause: err });
    }
    return new AnnRanker(session, index, manifest, expected.topK);
  }

  rank(indices: ArrayLike<number>, n: number, time?: HistoryTime): Promise<TopK> {
    return this.batcher.submit(encodeRequest(indices, n, this.historyLen, this.takesTime, time));
  }

  /** User vectors for the batch (one inference), then one index search for all of them. */
  private async runBatch(rows: BigInt64Array[]): Promise<TopK[]> {
    const L = this.historyLen;
    const t0 = performance.now();
    const out = await this.session.run(batchFeeds(rows, L, this.takesTime));
    const users = out[OUTPUT_USER]!.data as Float32Array;
    const userStage: StageTiming = { name: 'user', graphSha256: this.manifest.user.sha256, ms: performance.now() - t0 };

    // The history window's items can take up to L of the best: ask for that many more, then drop them.
    const t1 = performance.now();
    const wanted = Math.min(this.topK + L, this.index.size);
    const found = this.index.search(users, wanted);
    const searchStage: StageTiming = {
      name: 'hnsw',
      graphSha256: this.manifest.index.sha256,
      ms: performance.now() - t1,
    };
    return rows.map((row, i) => ({
      ...dropWindow(
        found.keys.subarray(i * wanted, (i + 1) * wanted),
        found.scores.subarray(i * wanted, (i + 1) * wanted),
        row.subarray(0, L),
        this.topK,
      ),
      trace: { route: 'single', stages: [userStage, searchStage] },
    }));
  }

  /**
   * Answers on an empty and on a full history must be K distinct catalogue items with finite scores, best first; the
   * index must hold exactly the catalogue's items. Also pays the first-inference cost before real traffic does.
   */
  async warmUp(model: string, catalog: Catalog): Promise<void> {
    if (catalog.nItems !== this.index.size)
      throw new ModelLoadError(
        model,
        'warmup',
        `the HNSW index holds ${this.index.size} items, the catalogue ${catalog.nItems}`,
      );
    const full = Int32Array.from({ length: this.historyLen }, (_, i) => (i % catalog.nItems) + 1);
    for (const [what, n] of [
      ['an empty history', 0],
      ['a full history', full.length],
    ] as const) {
      let out: TopK;
      try {
        out = await this.rank(full, n);
      } catch (err) {
        throw new ModelLoadError(model, 'warmup', `HNSW search on ${what} failed: ${messageOf(err)}`, { cause: err });
      }
      const problem = outputProblem(out, this.topK, catalog.nItems);
      if (problem) throw new ModelLoadError(model, 'warmup', `HNSW search on ${what}: ${problem}`);
    }
  }

  async dispose(): Promise<void> {
    // The index is freed with its object (usearch has no explicit release); the session is native memory.
    await this.session.release();
  }
}

/**
 * The best k of one query's search results (best first) without the history window's items (0 = padding) and the
 * index's unfilled slots (key 0). When fewer than k remain (a catalogue barely larger than k), the window's items
 * fill the tail with the exact graph's masked score, as the exact graph would return them.
 */
export function dropWindow(
  keys: BigInt64Array,
  scores: Float32Array,
  window: BigInt64Array,
  k: number,
): { items: BigInt64Array; scores: Float32Array } {
  const inWindow = new Set<bigint>();
  for (const item of window) if (item !== 0n) inWindow.add(item);
  const items = new BigInt64Array(k);
  const out = new Float32Array(k);
  let n = 0;
  const skipped: bigint[] = [];
  for (let j = 0; j < keys.length && n < k; j++) {
    const key = keys[j]!;
    if (key === 0n) continue;
    if (inWindow.has(key)) {
      skipped.push(key);
      continue;
    }
    items[n] = key;
    out[n++] = scores[j]!;
  }
  for (const key of skipped) {
    if (n >= k) break;
    items[n] = key;
    out[n++] = MASKED_SCORE;
  }
  return n === k ? { items, scores: out } : { items: items.subarray(0, n), scores: out.subarray(0, n) };
}
