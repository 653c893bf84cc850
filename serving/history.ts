/**
 * A request's history as the graph wants it: item indices, oldest first, the most recent L left-padded with 0 into
 * an int64 row. Pure functions over caller-owned buffers, so the hot path allocates nothing here.
 */
import type { Catalog } from './catalog';

export interface TimedItem {
  item_id: string;
  timestamp_ms: number;
}

function isOrdered(history: readonly TimedItem[]): boolean {
  for (let i = 1; i < history.length; i++) if (history[i]!.timestamp_ms < history[i - 1]!.timestamp_ms) return false;
  return true;
}

/**
 * Writes the catalogue indices of the history's known items into `out`, oldest first (stable by timestamp; unknown
 * items dropped) and returns how many it wrote. `out` must hold history.length entries. With `times`, also writes each
 * written item's timestamp_ms there (`unknownMs` for an item sent without one).
 */
export function historyIndices(
  history: readonly TimedItem[],
  catalog: Catalog,
  out: Int32Array,
  times?: Float64Array,
  unknownMs = 0,
): number {
  let n = 0;
  const put = (h: TimedItem) => {
    const idx = catalog.indexOf(h.item_id);
    if (idx > 0) {
      if (times) times[n] = h.timestamp_ms || unknownMs;
      out[n++] = idx;
    }
  };
  if (isOrdered(history)) {
    for (const h of history) put(h);
    return n;
  }
  // Clients usually send histories in order; sorting (and its allocation) is the rare path.
  const order = history.map((_, i) => i).sort((a, b) => history[a]!.timestamp_ms - history[b]!.timestamp_ms || a - b);
  for (const i of order) put(history[i]!);
  return n;
}

/**
 * Fills `row` (length L) with the last min(n, L) of `indices[0..n)`, right-aligned, and zeros before them: the
 * left-padded, most-recent-last layout models/export.py documents.
 */
export function encodeHistory(indices: ArrayLike<number>, n: number, row: BigInt64Array): void {
  const len = row.length;
  const take = Math.min(n, len);
  const pad = len - take;
  row.fill(0n, 0, pad);
  for (let j = 0; j < take; j++) row[pad + j] = BigInt(indices[n - take + j]!);
}

/** The timestamps row aligned with encodeHistory's row: the same last min(n, L) entries, 0 at the padding. */
export function encodeTimes(times: ArrayLike<number>, n: number, row: BigInt64Array): void {
  const len = row.length;
  const take = Math.min(n, len);
  const pad = len - take;
  row.fill(0n, 0, pad);
  for (let j = 0; j < take; j++) row[pad + j] = BigInt(Math.round(times[n - take + j]!));
}

/**
 * One request's graph inputs in a single buffer: the history row (L), then for a time-aware graph its timestamps row
 * (L) and the request time. Items without a known time count as happening now: no time passes between them and the
 * request. A fresh buffer: the caller's `indices` are free again as soon as this returns.
 */
export function encodeRequest(
  indices: ArrayLike<number>,
  n: number,
  historyLen: number,
  takesTime: boolean,
  time?: { times?: ArrayLike<number>; nowMs: number },
): BigInt64Array {
  const L = historyLen;
  const row = new BigInt64Array(takesTime ? 2 * L + 1 : L);
  encodeHistory(indices, n, row.subarray(0, L));
  if (takesTime) {
    const nowMs = time?.nowMs ?? Date.now();
    encodeTimes(time?.times ?? new Float64Array(n).fill(nowMs), n, row.subarray(L, 2 * L));
    row[2 * L] = BigInt(Math.round(nowMs));
  }
  return row;
}
