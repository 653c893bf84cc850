/**
 * The time-based split. One global pair of boundaries: everything in train happened before everything in
 * validation, which happened before everything in test, so no model or statistic sees the future of what it is
 * evaluated on.
 */
export interface SplitBoundaries {
  /** First timestamp (unix s) of the validation window. */
  validStart: number;
  /** First timestamp (unix s) of the test window. */
  testStart: number;
}

export const TRAIN = 0;
export const VALID = 1;
export const TEST = 2;
export type Split = typeof TRAIN | typeof VALID | typeof TEST;
export const SPLIT_NAMES = ['train', 'valid', 'test'] as const;

/** Boundaries at the time quantiles that leave `valid` and `test` fractions of the (time-sorted) interactions. */
export function splitBoundaries(sortedTs: ArrayLike<number>, valid: number, test: number): SplitBoundaries {
  const n = sortedTs.length;
  if (n < 3) throw new Error(`time split: need at least 3 interactions, got ${n}`);
  const validStart = sortedTs[Math.floor(n * (1 - valid - test))]!;
  const testStart = sortedTs[Math.floor(n * (1 - test))]!;
  if (validStart <= sortedTs[0]!)
    throw new Error(
      `time split: the training window is empty (the first ${(1 - valid - test) * 100}% share one timestamp)`,
    );
  if (testStart <= validStart)
    throw new Error(`time split: the validation window is empty (too many interactions share timestamp ${validStart})`);
  return { validStart, testStart };
}

/** Which split an interaction at `ts` belongs to. Ties at a boundary go to the later split. */
export function splitOf(ts: number, b: SplitBoundaries): Split {
  return ts < b.validStart ? TRAIN : ts < b.testStart ? VALID : TEST;
}
