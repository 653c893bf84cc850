/** The ETL's configuration: how to read the raw logs, what counts as valid, how to split. Part of the version hash. */
import { z } from 'zod';
import { ColumnMapping, RAW_FORMATS } from './raw-formats';

export const EtlConfig = z
  .object({
    format: z.enum(RAW_FORMATS),
    /** Where the canonical fields are; a `rating` column is read unless `rating` is mapped to null (see ColumnMapping). */
    columns: ColumnMapping.default({ user: 'user_id', item: 'item_id', timestamp: 'timestamp' }),
    /** Unit of numeric timestamps in the raw logs; stored timestamps are always unix seconds. */
    timestampUnit: z.enum(['s', 'ms']).default('s'),
    /** Interactions before this time (unix s) are rejected as corrupt; 1990-01-01 by default. */
    minTimestamp: z.number().int().default(631152000),
    /** Allowed slack for clocks ahead of the ETL host, in seconds. */
    maxFutureSeconds: z.number().int().nonnegative().default(86400),
    ratingRange: z.tuple([z.number(), z.number()]).default([0, 5]),
    /** Exact duplicate (user, item, timestamp) records: dropped and counted, or an error naming both lines. */
    duplicates: z.enum(['drop', 'error']).default('drop'),
    /** Fractions of interactions (by time) held out for validation and test. */
    split: z
      .object({ valid: z.number().gt(0).lt(0.5), test: z.number().gt(0).lt(0.5) })
      .strict()
      .default({ valid: 0.1, test: 0.1 }),
    /** Stop after this many problems: enough to act on, bounded memory for a badly broken file. */
    maxReportedProblems: z.number().int().positive().default(20),
  })
  .strict();
export type EtlConfig = z.infer<typeof EtlConfig>;
export type EtlConfigInput = z.input<typeof EtlConfig>;

export const ID_MAX_LENGTH = 256;
