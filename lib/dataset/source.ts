/**
 * The sources of a dataset version: raw logs in the object store and how each is read.
 *
 * A source is either a URI string, read as the ETL config says (its format, columns and timestampUnit: the form every
 * dataset had before sources had their own formats), or a spec `{ uri, format, ... }` with its own reading, so one
 * version can join, say, a RecBole export with the serving tier's feedback log. A spec's options it does not give are
 * the config's, except for `recsys-feedback`, whose fields are fixed (the log is ours) and whose times are in ms.
 *
 * Sources are part of the content address: the version hash covers the normalised data, the ETL config and, for each
 * source read otherwise than the config says, its bytes' digest and reading (sourcesKey). So appending a source with
 * its own reading (a feedback log) always yields a new version that lists it, even when it adds no row, and two specs
 * that yield identical rows yield two versions whose manifests each name their own sources; sources read as the
 * config says are covered by the data, as before, so the versions built before keep their address.
 */
import { z } from 'zod';
import { configIssue } from '../config-issue';
import { ConfigError } from '../errors';
import type { EtlConfig } from './etl-config';
import {
  ColumnMapping,
  DEFAULT_FEEDBACK_EVENTS,
  FEEDBACK_COLUMNS,
  FEEDBACK_EVENTS,
  RATING_COLUMN,
  RAW_FORMATS,
  type RawFormat,
} from './raw-formats';

const FEEDBACK: RawFormat = 'recsys-feedback';

/** A source with its own reading. */
export const SourceObject = z
  .object({
    uri: z.string().min(1),
    format: z.enum(RAW_FORMATS),
    /** Where the canonical fields are (default: the config's columns); not for recsys-feedback. */
    columns: ColumnMapping.optional(),
    /** Unit of numeric timestamps (default: the config's; 'ms' for recsys-feedback). */
    timestampUnit: z.enum(['s', 'ms']).optional(),
    /** recsys-feedback: the events that become interactions (default FEEDBACK_EVENT_CLICK); the others are skipped. */
    events: z.array(z.enum(FEEDBACK_EVENTS)).min(1).optional(),
    /**
     * recsys-feedback: the rating each interaction carries, so an implicit positive joins a dataset of explicit
     * ratings inside its rating vocabulary (training ignores ratings); none when unset.
     */
    rating: z.number().optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.format === FEEDBACK) {
      if (s.columns !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['columns'],
          message: `is fixed for format ${FEEDBACK} (${Object.values(FEEDBACK_COLUMNS).join(', ')})`,
        });
      return;
    }
    for (const key of ['events', 'rating'] as const)
      if (s[key] !== undefined)
        ctx.addIssue({ code: 'custom', path: [key], message: `applies only to format ${FEEDBACK}` });
  });

export const SourceSpec = z.union([z.string().min(1), SourceObject]);
export type SourceSpec = z.infer<typeof SourceSpec>;
/** What callers write (columns may be partial); parseSources turns it into a SourceSpec. */
export type SourceSpecInput = z.input<typeof SourceSpec>;

/** The object-store URI of a source. */
export const sourceUri = (s: SourceSpecInput): string => (typeof s === 'string' ? s : s.uri);

/** How one source is read: everything the reader and the record validation need. */
export interface SourceReading {
  format: RawFormat;
  columns: ColumnMapping;
  timestampUnit: 's' | 'ms';
  /** recsys-feedback: the events that become interactions, sorted. */
  events?: string[];
  /** recsys-feedback: the fixed rating of its interactions. */
  rating?: number;
}

/** The reading of a URI string: the config's. */
const configReading = (cfg: EtlConfig): SourceReading => ({
  format: cfg.format,
  columns: cfg.columns,
  timestampUnit: cfg.timestampUnit,
});

/** The effective reading of a source: its own options, the config's where it gives none. */
export function readingOf(source: SourceSpec, cfg: EtlConfig): SourceReading {
  if (typeof source === 'string') return configReading(cfg);
  if (source.format === FEEDBACK)
    return {
      format: FEEDBACK,
      columns: { ...FEEDBACK_COLUMNS, rating: source.rating === undefined ? null : RATING_COLUMN },
      timestampUnit: source.timestampUnit ?? 'ms',
      events: [...new Set(source.events ?? DEFAULT_FEEDBACK_EVENTS)].sort(),
      ...(source.rating === undefined ? {} : { rating: source.rating }),
    };
  return {
    format: source.format,
    columns: source.columns ?? cfg.columns,
    timestampUnit: source.timestampUnit ?? cfg.timestampUnit,
  };
}

/** A reading as text with a fixed key order, so equal readings compare and hash equal. */
function canonical(r: SourceReading): string {
  const { user, item, timestamp, rating } = r.columns;
  return JSON.stringify({
    format: r.format,
    columns: { user, item, timestamp, rating },
    timestampUnit: r.timestampUnit,
    events: r.events,
    rating: r.rating,
  });
}

/**
 * What the sources add to the version hash: the digest and reading of each source read otherwise than the config
 * says, as a sorted list (the order of sources changes no row, so it changes no version); undefined when every source
 * is read as the config says, which keeps the hash of such versions what it was before sources had readings.
 */
export function sourcesKey(
  sources: readonly { source: SourceSpec; sha256: string }[],
  cfg: EtlConfig,
): string | undefined {
  const asConfig = canonical(configReading(cfg));
  const own = sources
    .map((s) => ({ sha256: s.sha256, reading: canonical(readingOf(s.source, cfg)) }))
    .filter((s) => s.reading !== asConfig)
    .map((s) => `${s.sha256} ${s.reading}`)
    .sort();
  return own.length === 0 ? undefined : JSON.stringify(own);
}

/** Checks one source; a ConfigError names `sources[<index>].<field>` and the value. */
export function parseSource(input: unknown, index: number, cfg?: EtlConfig): SourceSpec {
  const at = `sources[${index}]`;
  if (typeof input === 'string') {
    if (input === '') throw new ConfigError(at, input, 'is an empty URI');
    return input;
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new ConfigError(at, input, 'must be a URI string or an object { uri, format, ... }');
  const parsed = SourceObject.safeParse(input);
  if (!parsed.success) {
    const options = Object.keys(SourceObject.shape).filter((k) => k !== 'uri' && k !== 'format');
    throw configIssue(at, input, parsed.error, () => `is not a source option (uri, format, ${options.join(', ')})`);
  }
  const spec = parsed.data;
  if (cfg && spec.rating !== undefined) {
    const [lo, hi] = cfg.ratingRange;
    if (!(spec.rating >= lo && spec.rating <= hi))
      throw new ConfigError(`${at}.rating`, spec.rating, `is outside the ETL config's ratingRange [${lo}, ${hi}]`);
  }
  return spec;
}

/** Checks a list of sources (at least one); with the ETL config, also what depends on it (a rating in range). */
export function parseSources(input: unknown, cfg?: EtlConfig): SourceSpec[] {
  if (!Array.isArray(input) || input.length === 0)
    throw new ConfigError('sources', input, 'must be a non-empty list of sources');
  return input.map((s, i) => parseSource(s, i, cfg));
}
