/**
 * The HNSW attachment of a single-model version: a small JSON manifest in the object store naming the user-tower
 * graph and the usearch index built from the version's item embeddings, by URI and sha256, with the search depth its
 * check chose and the recall@k it measured against exact search. The version's `recsys.ann.uri` points at it (and
 * `recsys.ann.sha256` is its checksum), so one checksum pins both files. The export activity writes it only when the
 * index passed its check; serving reads it (serving/ann-ranker.ts) and serves the exact graph (`recsys.onnx.uri`,
 * always the exact top-K graph) when there is none or it does not verify.
 *   user graph  history int64 [B, L] (+ timestamps int64 [B, L], query_time int64 [B] for time-aware families)
 *               -> user float32 [B, dims]          (models/ann_export.py)
 *   index       usearch's file, inner product, f32, keys = 1-based item indices, nItems of them
 */
import { z } from 'zod';

export const ANN_KINDS = ['hnsw'] as const;

/**
 * How an HNSW graph's neighbourhoods are chosen at build time: by inner product or by angle
 * (serving/retrieval/hnsw.ts). Searches rank by inner product either way.
 */
export const HNSW_GRAPHS = ['ip', 'angular'] as const;
export const HnswGraphKind = z.enum(HNSW_GRAPHS);
export type HnswGraph = z.infer<typeof HnswGraphKind>;

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');
const positiveInt = z.number().int().positive();

export const AnnFile = z.object({
  uri: z.string().startsWith('s3://'),
  sha256: Sha256,
  bytes: z.number().int().nonnegative(),
});
export type AnnFile = z.infer<typeof AnnFile>;

export const AnnManifest = z.object({
  kind: z.enum(ANN_KINDS),
  /** Width of the user and item vectors. */
  dims: positiveInt,
  /** Items in the index: the catalogue of the version (keys 1..nItems). */
  nItems: positiveInt,
  /** L: the user graph takes histories of exactly this length. */
  historyLen: positiveInt,
  /** Scores are inner products, as the exact graph's. */
  metric: z.literal('ip'),
  /** Manifests written before the angular graph have none: theirs is an inner-product graph. */
  graph: HnswGraphKind.default('ip'),
  params: z.object({
    /** Graph degree (M). */
    connectivity: z.number().int().min(2),
    /** Candidates explored while inserting (efConstruction). */
    expansionAdd: positiveInt,
    /** Candidates explored per search (ef): the smallest that passed the check. */
    expansionSearch: positiveInt,
  }),
  /** The check it passed: recall@k against exact search on `queries` user vectors is at least `target`. */
  check: z
    .object({
      k: positiveInt,
      target: z.number().gt(0).lte(1),
      recall: z.number().min(0).max(1),
      queries: positiveInt,
    })
    .refine((c) => c.recall >= c.target, { message: 'recall is below the target: this index may not serve' }),
  user: AnnFile,
  index: AnnFile,
});
export type AnnManifest = z.infer<typeof AnnManifest>;

/** The value at a path of a parsed JSON document, for error messages. */
function valueAt(json: unknown, path: PropertyKey[]): unknown {
  let at: unknown = json;
  for (const key of path)
    at = at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[key] : undefined;
  return at;
}

/** The manifest in `text`, or an error naming `where`, the field that is wrong, why, and its value. */
export function parseAnnManifest(text: string, where: string): AnnManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`);
  }
  const parsed = AnnManifest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const value = JSON.stringify(valueAt(json, issue.path)) ?? 'undefined';
    throw new Error(`${where}: ${issue.path.join('.') || '(root)'}: ${issue.message} (value: ${value})`);
  }
  return parsed.data;
}
