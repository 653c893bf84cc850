/**
 * A cascade version as a Ranker: recall (top N from the retrieval graph) → rank (score the candidates, keep M) →
 * re-rank (score those M, best first), three ONNX sessions in one request. The router decides per request whether
 * the recall stage's answer is confident enough to serve as it is (the cheap path) or the candidates go through the
 * ranking stages (the expensive path, within its budget). The history's own items are dropped from the candidates
 * before ranking, as models/cascade.py does offline, so the ranking stages only score what can be returned.
 * Every answer carries its route and each stage's graph checksum and latency.
 */
import type { CascadeManifest } from '../lib/cascade-manifest';
import { stageOf } from '../lib/cascade-manifest';
import type { Catalog } from './catalog';
import { ModelLoadError, messageOf } from './errors';
import { encodeHistory } from './history';
import {
  outputProblem,
  type HistoryTime,
  type RankTrace,
  type Ranker,
  type StageTiming,
  type TopK,
} from './onnx-ranker';
import type { StageScorer } from './stage-session';

/** What the cascade asks of the router (serving/router.ts): the route for the recall stage's scores. */
export interface RouteDecider {
  route(cheapScores: Float32Array): { route: RankTrace['route'] };
}

/** Indices of `scores` sorted best first (stable: equal scores keep the candidates' order). */
export function orderBestFirst(scores: Float32Array): Int32Array {
  const order = Int32Array.from(scores.keys());
  return order.sort((a, b) => scores[b]! - scores[a]! || a - b);
}

export class CascadeRanker implements Ranker {
  readonly historyLen: number;
  /** The final list's length (the re-rank stage's K). */
  readonly topK: number;
  private readonly keep: number;
  private readonly sha: Record<'recall' | 'rank' | 'rerank', string>;

  constructor(
    private readonly recall: Ranker,
    private readonly ranker: StageScorer,
    private readonly reranker: StageScorer,
    manifest: CascadeManifest,
    private readonly router: RouteDecider,
  ) {
    this.historyLen = manifest.historyLen;
    this.topK = stageOf(manifest, 'rerank').topK;
    this.keep = stageOf(manifest, 'rank').topK;
    this.sha = {
      recall: stageOf(manifest, 'recall').sha256,
      rank: stageOf(manifest, 'rank').sha256,
      rerank: stageOf(manifest, 'rerank').sha256,
    };
  }

  rank(indices: ArrayLike<number>, n: number, time?: HistoryTime): Promise<TopK> {
    return this.run(indices, n, false, time);
  }

  /** `forceCascade`: skip the router (warm-up, benchmarks of the expensive path). */
  async run(indices: ArrayLike<number>, n: number, forceCascade: boolean, time?: HistoryTime): Promise<TopK> {
    const t0 = performance.now();
    const cheap = await this.recall.rank(indices, n, time);
    const recallStage = this.timing('recall', t0);
    const route = forceCascade ? 'cascade' : this.router.route(cheap.scores).route;
    if (route !== 'cascade')
      return { scores: cheap.scores, items: cheap.items, trace: { route, stages: [recallStage] } };

    const history = new BigInt64Array(this.historyLen);
    encodeHistory(indices, n, history);
    const seen = new Set<bigint>();
    for (let i = 0; i < n; i++) seen.add(BigInt(indices[i]!));
    const candidates = cheap.items.filter((item) => !seen.has(item));
    if (candidates.length === 0)
      return { scores: cheap.scores, items: cheap.items, trace: { route, stages: [recallStage] } };

    const t1 = performance.now();
    const rankScores = await this.ranker.score(history, candidates);
    const rankStage = this.timing('rank', t1);
    const kept = orderBestFirst(rankScores).subarray(0, this.keep);
    const keptItems = BigInt64Array.from(kept, (j) => candidates[j]!);
    const keptScores = Float32Array.from(kept, (j) => rankScores[j]!);

    const t2 = performance.now();
    const finalScores = await this.reranker.score(history, keptItems, keptScores);
    const rerankStage = this.timing('rerank', t2);
    const order = orderBestFirst(finalScores);
    return {
      scores: Float32Array.from(order, (j) => finalScores[j]!),
      items: BigInt64Array.from(order, (j) => keptItems[j]!),
      trace: { route, stages: [recallStage, rankStage, rerankStage] },
    };
  }

  private timing(name: 'recall' | 'rank' | 'rerank', since: number): StageTiming {
    return { name, graphSha256: this.sha[name], ms: performance.now() - since };
  }

  /**
   * Both paths on an empty and on a full history; fails unless each answer is distinct catalogue items with finite
   * scores, best first (the expensive path returns up to its M, the cheap one N).
   */
  async warmUp(model: string, catalog: Catalog): Promise<void> {
    const full = Int32Array.from({ length: this.historyLen }, (_, i) => (i % catalog.nItems) + 1);
    for (const [what, n] of [
      ['an empty history', 0],
      ['a full history', full.length],
    ] as const) {
      for (const forced of [false, true]) {
        let out: TopK;
        try {
          out = await this.run(full, n, forced);
        } catch (err) {
          throw new ModelLoadError(model, 'warmup', `cascade on ${what} failed: ${messageOf(err)}`, { cause: err });
        }
        const problem = outputProblem(out, out.items.length, catalog.nItems);
        if (problem) throw new ModelLoadError(model, 'warmup', `cascade on ${what}: ${problem}`);
      }
    }
  }

  async dispose(): Promise<void> {
    await Promise.allSettled([this.recall.dispose(), this.ranker.dispose(), this.reranker.dispose()]);
  }
}
