/** Recall@k of an approximate top-k against the exact one: the HNSW index's check before it may serve. */

/** Mean over queries of |approx top-k ∩ exact top-k| / k; both row-major [queries * k] keys, as the searches return. */
export function recallAtK(approx: BigInt64Array, exact: BigInt64Array, queries: number, k: number): number {
  if (!Number.isInteger(queries) || queries < 1)
    throw new RangeError(`queries must be a positive integer, got ${queries}`);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
  if (approx.length !== queries * k)
    throw new RangeError(`approx: length ${approx.length}, expected queries x k = ${queries} x ${k}`);
  if (exact.length !== queries * k)
    throw new RangeError(`exact: length ${exact.length}, expected queries x k = ${queries} x ${k}`);
  let hits = 0;
  const wanted = new Set<bigint>();
  for (let q = 0; q < queries; q++) {
    wanted.clear();
    for (let j = q * k; j < (q + 1) * k; j++) wanted.add(exact[j]!);
    // A key counts once however often it appears (an approximate row could repeat one).
    for (let j = q * k; j < (q + 1) * k; j++) if (wanted.delete(approx[j]!)) hits++;
  }
  return hits / (queries * k);
}
