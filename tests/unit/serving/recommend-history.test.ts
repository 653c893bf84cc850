/** Where recommend() takes the history from: the request, the online store after the dataset, the dataset, none. */
import { Catalog, UserHistories } from '../../../serving/catalog';
import { ItemMarks } from '../../../serving/item-marks';
import type { HistoryRead } from '../../../serving/online-store';
import type { RecommendRequest } from '../../../serving/proto';
import { recommend } from '../../../serving/recommend';
import { FakeRanker, fakeCatalog } from './fakes';

const req = (r: Partial<RecommendRequest>): RecommendRequest => ({
  user_id: 'u1',
  history: [],
  k: 3,
  exclude_item_ids: [],
  ...r,
});

function model() {
  const catalog = fakeCatalog();
  return { catalog, ranker: new FakeRanker(), excluded: new ItemMarks(catalog.nItems + 1) };
}

const store = (read: HistoryRead, popular?: { itemId: string; score: number }[]) => ({
  history: () => Promise.resolve(read),
  popular: () => popular,
});
const timed = (...ids: string[]) => ids.map((item_id, i) => ({ item_id, timestamp_ms: 1000 + i }));

test("a known user's store events come after their dataset history, not instead of it", async () => {
  const m = model();
  const r = await recommend(m, req({}), store({ status: 'ok', items: timed('d') }));
  expect(m.ranker.calls).toEqual([[1, 2, 4]]); // a, b from the dataset, then d
  expect(r).toMatchObject({ historySource: 'HISTORY_SOURCE_ONLINE_STORE', storeDegraded: false });
  expect(r.items.map((i) => i.item_id)).toEqual(['c', 'e']); // the history is never recommended
});

test('a store that holds the dataset items again (a backfill) is taken as it is', async () => {
  const m = model();
  await recommend(m, req({}), store({ status: 'ok', items: timed('a', 'b', 'e') }));
  expect(m.ranker.calls).toEqual([[1, 2, 5]]);
});

test("an unknown user's history is the store's alone; the request's own history wins over both", async () => {
  const m = model();
  await recommend(m, req({ user_id: 'stranger' }), store({ status: 'ok', items: timed('c') }));
  const own = await recommend(m, req({ history: timed('e') }), store({ status: 'ok', items: timed('c') }));
  expect(m.ranker.calls).toEqual([[3], [5]]);
  expect(own.historySource).toBe('HISTORY_SOURCE_REQUEST');
});

test('a store that does not answer: the dataset history, marked degraded; nothing anywhere: popularity', async () => {
  const m = model();
  const down = await recommend(m, req({}), store({ status: 'unavailable', reason: 'timeout' }));
  expect(down).toMatchObject({ historySource: 'HISTORY_SOURCE_DATASET', storeDegraded: true, fallback: false });
  const none = await recommend(m, req({ user_id: 'stranger' }), store({ status: 'ok', items: [] }));
  expect(none).toMatchObject({ historySource: 'HISTORY_SOURCE_NONE', fallback: true, storeDegraded: false });
  expect(none.fallbackReason).toBe('FALLBACK_REASON_NO_HISTORY');
});

test("the popularity fallback puts the store's recent favourites first (shares of recent interest), then the training data's", async () => {
  const m = model();
  const recent = [
    { itemId: 'b', score: 6 },
    { itemId: 'not-in-catalogue', score: 3 },
    { itemId: 'e', score: 1 },
  ];
  const r = await recommend(
    m,
    req({ user_id: 'stranger', k: 4, exclude_item_ids: ['e'] }),
    store({ status: 'ok', items: [] }, recent),
  );
  // b first (6 of 10), the unknown item and the excluded e skipped, then f, d, c by training popularity (no repeat).
  expect(r.items).toEqual([
    { item_id: 'b', score: 0.6 },
    { item_id: 'f', score: expect.closeTo(0.3, 5) },
    { item_id: 'd', score: expect.closeTo(0.2, 5) },
    { item_id: 'c', score: expect.closeTo(0.1, 5) },
  ]);
  const none = await recommend(m, req({ user_id: 'stranger', k: 2 }), store({ status: 'ok', items: [] }));
  expect(none.items.map((i) => i.item_id)).toEqual(['f', 'e']);
});

test("the item times go to the ranker with the history: sent ones, unknown ones as now, the dataset's after merging", async () => {
  const m = model();
  const before = Date.now();
  await recommend(m, req({ history: [{ item_id: 'c', timestamp_ms: 0 }, ...timed('e')] }));
  const [sent] = m.ranker.times;
  expect(sent![0]).toBeGreaterThanOrEqual(before); // no time sent: taken as the request's
  expect(sent![1]).toBe(1000);

  // A dataset that kept times: a known user's dataset items keep theirs, the store's events follow with their own.
  const catalog = new Catalog(
    fakeCatalog().itemIds,
    Int32Array.of(1),
    Float32Array.of(1),
    new UserHistories(new Map([['u1', 0]]), Int32Array.of(0, 2), Int32Array.of(1, 2), Float64Array.of(10, 20)),
  );
  const timedModel = { catalog, ranker: new FakeRanker(), excluded: new ItemMarks(catalog.nItems + 1) };
  await recommend(timedModel, req({}), store({ status: 'ok', items: timed('d') }));
  expect(timedModel.ranker.calls).toEqual([[1, 2, 4]]);
  expect(timedModel.ranker.times).toEqual([[10, 20, 1000]]);
  await recommend(timedModel, req({}));
  expect(timedModel.ranker.times.at(-1)).toEqual([10, 20]);
});
