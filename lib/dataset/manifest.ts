/**
 * The manifest of a dataset version: written last, so its presence is what makes a version exist. Holds what a
 * consumer needs without opening the data: schema, counts, split boundaries, sources and reference statistics.
 */
import { z } from 'zod';
import { EtlConfig } from './etl-config';
import { RAW_FORMATS } from './raw-formats';
import { SourceSpec } from './source';

const Summary = z.object({ min: z.number(), p50: z.number(), mean: z.number(), p90: z.number(), max: z.number() });
export type Summary = z.infer<typeof Summary>;

export const DatasetStats = z.object({
  interactionsPerUser: Summary,
  interactionsPerItem: Summary,
  /** Share of interactions that go to the most popular 1% / 10% of items. */
  itemTop1pctShare: z.number(),
  itemTop10pctShare: z.number(),
  ratingHistogram: z.record(z.string(), z.number()),
  dailyVolume: Summary,
  timestamp: z.object({ min: z.number(), max: z.number() }),
});
export type DatasetStats = z.infer<typeof DatasetStats>;

/** One source a version was built from. The optional fields are absent in manifests written before they existed. */
export const ManifestSource = z.object({
  uri: z.string(),
  sha256: z.string(),
  bytes: z.number(),
  records: z.number(),
  /** The format the source was read with. */
  format: z.enum(RAW_FORMATS).optional(),
  /** The source as given to the ETL (a URI string read as the config says, or a spec with its own reading). */
  spec: SourceSpec.optional(),
  /** Lines passed over on purpose, by reason (recsys-feedback: the event names outside the source's filter). */
  skipped: z.record(z.string(), z.number()).optional(),
});
export type ManifestSource = z.infer<typeof ManifestSource>;

export const Manifest = z.object({
  schemaVersion: z.literal(1),
  name: z.string(),
  version: z.string(),
  uri: z.string(),
  createdAt: z.string(),
  config: EtlConfig,
  sources: z.array(ManifestSource),
  files: z.record(z.string(), z.object({ uri: z.string(), rows: z.number(), sha256: z.string() })),
  schema: z.record(z.string(), z.record(z.string(), z.string())),
  counts: z.object({
    raw: z.number(),
    duplicatesDropped: z.number(),
    interactions: z.number(),
    users: z.number(),
    items: z.number(),
    train: z.number(),
    valid: z.number(),
    test: z.number(),
  }),
  split: z.object({ validStart: z.number(), testStart: z.number(), rule: z.string() }),
  stats: DatasetStats,
});
export type Manifest = z.infer<typeof Manifest>;

/**
 * The sources a version was built from, as the ETL takes them: what a retrain appends new logs to, so the previous
 * sources alone give the previous version again. A manifest from before sources had specs gives its URIs, which were
 * read as its config says: exactly what a URI string means.
 */
export function manifestSources(m: Pick<Manifest, 'sources'>): SourceSpec[] {
  return m.sources.map((s) => s.spec ?? s.uri);
}
