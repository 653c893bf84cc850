/**
 * bench/online-path.ts compares three sources of the same history; these check that the fixture really gives each
 * variant the same items, so a difference in the figures is the cost of the source, not of a different history.
 */
import { benchEvent, prefillEvents, storeUserId, variantRequests } from '../../../bench/online-fixture';
import { benchRequests, syntheticCatalog } from '../../../bench/serving-fixture';

const N = 3706;

test('the dataset users of the synthetic catalogue hold each request’s history, in order', () => {
  const catalog = syntheticCatalog(N);
  const requests = benchRequests(N);
  expect(catalog.users.size).toBe(requests.length);
  for (const r of requests) {
    const fromDataset = [...catalog.users.of(r.user_id)!].map((i) => catalog.idOf(i));
    expect(fromDataset).toEqual(r.history.map((h) => h.item_id));
  }
});

test('the Redis prefill gives each store user request r’s items and times, and no dataset user is a store user', () => {
  const requests = benchRequests(N);
  const events = prefillEvents(N);
  expect(events).toHaveLength(requests.length * requests[0]!.history.length);
  const catalog = syntheticCatalog(N);
  for (const [r, req] of requests.entries()) {
    const mine = events.filter((e) => e.userId === storeUserId(r));
    expect(mine.map((e) => [e.itemId, e.timeMs])).toEqual(req.history.map((h) => [h.item_id, h.timestamp_ms]));
    expect(catalog.users.of(storeUserId(r))).toBeUndefined();
  }
  expect(new Set(events.map((e) => e.eventId)).size).toBe(events.length);
});

test('only the request variant sends a history; the others send the user id of their source', () => {
  const [request, store, dataset] = (['request', 'store', 'dataset'] as const).map((v) => variantRequests(N, v));
  expect(request![0]!.history).toHaveLength(20);
  expect(store![0]).toMatchObject({ user_id: storeUserId(0), history: [] });
  expect(dataset![0]).toMatchObject({ user_id: request![0]!.user_id, history: [] });
});

test('bench events have unique ids and items of the catalogue', () => {
  const events = Array.from({ length: 5000 }, (_, n) => benchEvent('p', n, N));
  expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length);
  const catalog = syntheticCatalog(N);
  expect(events.every((e) => catalog.indexOf(e.item_id) > 0)).toBe(true);
});
