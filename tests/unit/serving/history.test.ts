import { Catalog } from '../../../serving/catalog';
import { encodeHistory, encodeTimes, historyIndices } from '../../../serving/history';

// Items a..e have indices 1..5.
const catalog = new Catalog(['', 'a', 'b', 'c', 'd', 'e'], new Int32Array(0), new Float32Array(0));
const h = (item_id: string, timestamp_ms = 0) => ({ item_id, timestamp_ms });

describe('historyIndices', () => {
  test('maps ids to indices in the order sent and drops unknown items', () => {
    const out = new Int32Array(4);
    expect(historyIndices([h('b'), h('zzz'), h('e'), h('a')], catalog, out)).toBe(3);
    expect([...out.subarray(0, 3)]).toEqual([2, 5, 1]);
  });

  test('orders by timestamp, oldest first, keeping the sent order between equal timestamps', () => {
    const out = new Int32Array(4);
    const n = historyIndices([h('c', 300), h('a', 100), h('d', 100), h('b', 200)], catalog, out);
    expect([...out.subarray(0, n)]).toEqual([1, 4, 2, 3]);
  });

  test('an empty or all-unknown history gives nothing', () => {
    expect(historyIndices([], catalog, new Int32Array(0))).toBe(0);
    expect(historyIndices([h('x'), h('y')], catalog, new Int32Array(2))).toBe(0);
  });
});

describe('encodeHistory', () => {
  test('left-pads a short history with zeros, most recent last', () => {
    const row = new BigInt64Array(5).fill(9n); // stale content from a previous request must not survive
    encodeHistory(Int32Array.of(3, 1), 2, row);
    expect([...row]).toEqual([0n, 0n, 0n, 3n, 1n]);
  });

  test('keeps only the most recent L items of a long history', () => {
    const row = new BigInt64Array(3);
    encodeHistory([1, 2, 3, 4, 5], 5, row);
    expect([...row]).toEqual([3n, 4n, 5n]);
  });

  test('uses only the first n entries of the buffer', () => {
    const row = new BigInt64Array(3);
    encodeHistory(Int32Array.of(7, 8, 99, 99), 2, row);
    expect([...row]).toEqual([0n, 7n, 8n]);
  });

  test('an empty history is all padding', () => {
    const row = new BigInt64Array(4).fill(5n);
    encodeHistory([], 0, row);
    expect([...row]).toEqual([0n, 0n, 0n, 0n]);
  });
});

describe('item times', () => {
  test("historyIndices writes each kept item's time beside it, unknown times as the given default", () => {
    const out = new Int32Array(4);
    const times = new Float64Array(4);
    const n = historyIndices([h('c', 300), h('zzz', 50), h('a', 0), h('b', 200)], catalog, out, times, 999);
    // Sorted by timestamp (0 first), the unknown item dropped with its time.
    expect([...out.subarray(0, n)]).toEqual([1, 2, 3]);
    expect([...times.subarray(0, n)]).toEqual([999, 200, 300]);
  });

  test('encodeTimes aligns with encodeHistory: the last L, left-padded with 0', () => {
    const row = new BigInt64Array(4).fill(7n);
    encodeTimes([1.4, 2, 3], 3, row);
    expect([...row]).toEqual([0n, 1n, 2n, 3n]);
    const short = new BigInt64Array(2);
    encodeTimes([1, 2, 3], 3, short);
    expect([...short]).toEqual([2n, 3n]);
  });
});
