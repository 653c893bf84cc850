/**
 * Shape checks for the row-major float32 matrices retrieval passes around (items [n, dims], queries [b, dims]) and
 * the top-k result layout they share, so every entry point rejects bad input with the same message.
 */

/** Per query the best k: keys are 1-based item indices, scores inner products, best first; row-major [b * k]. */
export interface TopKResult {
  keys: BigInt64Array;
  scores: Float32Array;
}

export function checkDims(dims: number): void {
  if (!Number.isInteger(dims) || dims < 1) throw new RangeError(`dims must be a positive integer, got ${dims}`);
}

/** Rows of a row-major matrix with `dims` columns; `what` names it in the error ("items", "queries"). */
export function rowsOf(matrix: Float32Array, dims: number, what: string): number {
  checkDims(dims);
  if (matrix.length % dims !== 0)
    throw new RangeError(`${what}: length ${matrix.length} is not a multiple of dims ${dims}`);
  return matrix.length / dims;
}

/** k must be an integer in [1, size]: asking for more than the catalogue holds is a caller's bug. */
export function checkK(k: number, size: number): void {
  if (!Number.isInteger(k) || k < 1 || k > size)
    throw new RangeError(`k must be an integer in [1, ${size}] (the number of items), got ${k}`);
}

/** The first non-finite value of a matrix as an error naming its row (1-based item = row + 1) and column. */
export function checkFinite(matrix: Float32Array, dims: number, what: string): void {
  for (let i = 0; i < matrix.length; i++) {
    const v = matrix[i]!;
    if (v - v !== 0) throw new RangeError(`${what}: row ${Math.floor(i / dims)} column ${i % dims} is ${v}`);
  }
}
