/** Validation of raw records into typed interactions; every problem names file, line, field and value. */
import type { InputProblem } from '../errors';
import type { EtlConfig } from './etl-config';
import { ID_MAX_LENGTH } from './etl-config';
import { RATING_COLUMN, type RawRecord } from './raw-formats';

export interface Interaction {
  user: string;
  item: string;
  /** Unix seconds. */
  ts: number;
  /** NaN when the log has no rating. */
  rating: number;
}

/** An interaction with the place it came from, for error messages about it (duplicates). */
export interface SourcedInteraction extends Interaction {
  file: string;
  line: number;
}

// Ids are opaque, but control characters or surrounding whitespace are almost always a parsing accident.
// eslint-disable-next-line no-control-regex
const BAD_ID = /[\u0000-\u001f\u007f]|^\s|\s$/;

function checkId(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return 'is empty';
  if (value.length > ID_MAX_LENGTH) return `is longer than ${ID_MAX_LENGTH} characters`;
  if (BAD_ID.test(value)) return 'has control characters or surrounding whitespace';
  // U+FFFD in an id is the trace of an earlier lossy decoding: two different ids may now look the same.
  if (value.includes('\uFFFD'))
    return 'contains U+FFFD (replacement character): the data was decoded with the wrong encoding before';
  return undefined;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * What validating a record needs: the config's rules and the reading of the record's source (its columns name the
 * fields in problems; its timestampUnit converts times). The ETL config itself is one, for a URI-string source.
 */
export type RecordRules = Pick<
  EtlConfig,
  'columns' | 'timestampUnit' | 'minTimestamp' | 'maxFutureSeconds' | 'ratingRange'
>;

/** Validates one record; returns the interaction, or the problems of that line. */
export function validateRecord(
  rec: RawRecord,
  file: string,
  cfg: RecordRules,
  nowSeconds: number,
): SourcedInteraction | InputProblem[] {
  const problems: InputProblem[] = [];
  const bad = (field: string, value: string | undefined, message: string) =>
    problems.push({ file, line: rec.line, field, value: value ?? '', message });

  const userErr = checkId(rec.user);
  if (userErr) bad(cfg.columns.user, rec.user, userErr);
  const itemErr = checkId(rec.item);
  if (itemErr) bad(cfg.columns.item, rec.item, itemErr);

  let ts = NaN;
  const tsField = cfg.columns.timestamp;
  if (rec.timestamp === undefined || rec.timestamp === '') bad(tsField, rec.timestamp, 'is empty');
  else if (!NUMBER.test(rec.timestamp.trim())) bad(tsField, rec.timestamp, 'is not a number');
  else {
    const raw = Number(rec.timestamp);
    ts = Math.floor(cfg.timestampUnit === 'ms' ? raw / 1000 : raw);
    if (ts < cfg.minTimestamp)
      bad(tsField, rec.timestamp, `is before the minimum timestamp ${cfg.minTimestamp} (${iso(cfg.minTimestamp)})`);
    else if (ts > nowSeconds + cfg.maxFutureSeconds) bad(tsField, rec.timestamp, `is in the future (${iso(ts)})`);
  }

  let rating = NaN;
  // A mapped rating column must have values; an unmapped one was found by its conventional name and is validated
  // all the same (null in the mapping is what ignores ratings, and then the reader gives none).
  if (typeof cfg.columns.rating === 'string' || rec.rating !== undefined) {
    const field = cfg.columns.rating ?? RATING_COLUMN;
    const [lo, hi] = cfg.ratingRange;
    if (rec.rating === undefined || rec.rating === '') bad(field, rec.rating, 'is empty');
    else if (!NUMBER.test(rec.rating.trim())) bad(field, rec.rating, 'is not a number');
    else {
      rating = Number(rec.rating);
      if (rating < lo || rating > hi) bad(field, rec.rating, `is out of range [${lo}, ${hi}]`);
    }
  }
  return problems.length > 0 ? problems : { user: rec.user!, item: rec.item!, ts, rating, file, line: rec.line };
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
