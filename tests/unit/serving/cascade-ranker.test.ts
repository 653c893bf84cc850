/**
 * The cascade's request path with scripted stages: the router's route decides whether the ranking stages run, the
 * history's items never reach them, the rank stage keeps its top M for the re-ranker, the answer is in the
 * re-ranker's order, and every answer names its route and the stages that ran with their graphs' checksums.
 */
import type { CascadeManifest } from '../../../lib/cascade-manifest';
import { CascadeRanker, orderBestFirst, type RouteDecider } from '../../../serving/cascade-ranker';
import type { Ranker, TopK } from '../../../serving/onnx-ranker';
import { createRouter } from '../../../serving/router';
import { routerSettings } from '../../../serving/router-config';
import type { StageScorer } from '../../../serving/stage-session';
import { fakeCatalog } from './fakes';

const sha = (c: string) => c.repeat(64);
const manifest: CascadeManifest = {
  kind: 'cascade',
  historyLen: 3,
  nItems: 6,
  stages: [
    { name: 'recall', uri: 's3://b/recall.onnx', sha256: sha('1'), bytes: 1, topK: 5 },
    { name: 'rank', uri: 's3://b/rank.onnx', sha256: sha('2'), bytes: 1, topK: 3 },
    { name: 'rerank', uri: 's3://b/rerank.onnx', sha256: sha('3'), bytes: 1, topK: 3 },
  ],
};

/** Recall: items 1..5 with the given scores, best first. */
class Recall implements Ranker {
  readonly historyLen = 3;
  readonly topK = 5;
  constructor(private readonly scores = Float32Array.of(5, 4, 3, 2, 1)) {}
  rank(): Promise<TopK> {
    return Promise.resolve({ scores: this.scores, items: BigInt64Array.of(1n, 2n, 3n, 4n, 5n) });
  }
  dispose = () => Promise.resolve();
}

/** Scores each candidate by a fixed table; records what it was given. */
class Scorer implements StageScorer {
  calls: { history: bigint[]; candidates: bigint[]; rankScores?: number[] }[] = [];
  constructor(private readonly table: Record<string, number>) {}
  score(history: BigInt64Array, candidates: BigInt64Array, rankScores?: Float32Array): Promise<Float32Array> {
    this.calls.push({
      history: [...history],
      candidates: [...candidates],
      ...(rankScores && { rankScores: [...rankScores] }),
    });
    return Promise.resolve(Float32Array.from(candidates, (c) => this.table[String(c)] ?? 0));
  }
  dispose = () => Promise.resolve();
}

const always = (route: 'cheap' | 'cascade' | 'cheap-budget'): RouteDecider => ({ route: () => ({ route }) });

function cascade(router: RouteDecider, recall = new Recall()) {
  // The ranker prefers high indices, the re-ranker reverses part of its order.
  const rank = new Scorer({ 1: 1, 2: 2, 3: 3, 4: 4, 5: 5 });
  const rerank = new Scorer({ 3: 9, 4: 1, 5: 5 });
  return { ranker: new CascadeRanker(recall, rank, rerank, manifest, router), rank, rerank };
}

test('the cascade route: history items are dropped before ranking, M kept, the answer in the re-ranker order', async () => {
  const { ranker, rank, rerank } = cascade(always('cascade'));
  // History: items 2 then 1 (oldest first).
  const out = await ranker.rank(Int32Array.of(2, 1), 2);
  expect(rank.calls).toEqual([{ history: [0n, 2n, 1n], candidates: [3n, 4n, 5n] }]);
  // Rank keeps its top M = 3 (5, 4, 3) with their scores; the re-ranker scores them.
  expect(rerank.calls).toEqual([{ history: [0n, 2n, 1n], candidates: [5n, 4n, 3n], rankScores: [5, 4, 3] }]);
  expect([...out.items]).toEqual([3n, 5n, 4n]);
  expect([...out.scores]).toEqual([9, 5, 1]);
  expect(out.trace?.route).toBe('cascade');
  expect(out.trace?.stages.map((s) => [s.name, s.graphSha256])).toEqual([
    ['recall', sha('1')],
    ['rank', sha('2')],
    ['rerank', sha('3')],
  ]);
  for (const s of out.trace!.stages) expect(s.ms).toBeGreaterThanOrEqual(0);
  expect(ranker.topK).toBe(3);
});

test('the rank stage keeps only M candidates for the re-ranker', async () => {
  const { ranker, rerank } = cascade(always('cascade'));
  await ranker.rank(Int32Array.of(), 0);
  expect(rerank.calls[0]!.candidates).toEqual([5n, 4n, 3n]); // M = 3 of the 5 candidates
});

test.each(['cheap', 'cheap-budget'] as const)('the %s route answers with the recall stage alone', async (route) => {
  const { ranker, rank, rerank } = cascade(always(route));
  const out = await ranker.rank(Int32Array.of(2), 1);
  expect(rank.calls).toHaveLength(0);
  expect(rerank.calls).toHaveLength(0);
  expect([...out.items]).toEqual([1n, 2n, 3n, 4n, 5n]);
  expect(out.trace).toEqual({ route, stages: [expect.objectContaining({ name: 'recall', graphSha256: sha('1') })] });
});

test('with the real router: confident answers stay cheap; the rest take the cascade until the budget is spent', async () => {
  let now = 0;
  const router = createRouter(
    routerSettings({ confidence: { measure: 'margin', threshold: 0.5 }, budget: { ratePerSecond: 1, burst: 2 } }),
    () => now,
  );
  const confident = cascade(router, new Recall(Float32Array.of(5, 1, 0.5, 0.2, 0.1))).ranker;
  const unsure = cascade(router, new Recall(Float32Array.of(5, 4.9, 4.8, 4.7, 4.6))).ranker;
  const routes: string[] = [];
  routes.push((await confident.rank(Int32Array.of(), 0)).trace!.route);
  for (let i = 0; i < 3; i++) routes.push((await unsure.rank(Int32Array.of(), 0)).trace!.route);
  now += 1000; // one token back
  routes.push((await unsure.rank(Int32Array.of(), 0)).trace!.route);
  expect(routes).toEqual(['cheap', 'cascade', 'cascade', 'cheap-budget', 'cascade']);
});

test('a history that covers every recalled item leaves the recall answer (nothing to rank)', async () => {
  const { ranker, rank } = cascade(always('cascade'));
  const out = await ranker.rank(Int32Array.of(1, 2, 3, 4, 5), 5);
  expect(rank.calls).toHaveLength(0);
  expect([...out.items]).toEqual([1n, 2n, 3n, 4n, 5n]);
});

test('warm-up checks both paths on empty and full histories', async () => {
  const { ranker, rank } = cascade(always('cheap'));
  await expect(ranker.warmUp('models:/m/1', fakeCatalog())).resolves.toBeUndefined();
  expect(rank.calls).toHaveLength(2); // the forced cascade runs, whatever the router says
  const broken = new CascadeRanker(
    new Recall(),
    new Scorer({}),
    { score: () => Promise.resolve(Float32Array.of(NaN, 1, 2)), dispose: () => Promise.resolve() },
    manifest,
    always('cascade'),
  );
  await expect(broken.warmUp('models:/m/1', fakeCatalog())).rejects.toThrow(/warmup: cascade on an empty history/);
});

test('orderBestFirst is a stable descending sort', () => {
  expect([...orderBestFirst(Float32Array.of(1, 3, 3, 2))]).toEqual([1, 2, 3, 0]);
});
