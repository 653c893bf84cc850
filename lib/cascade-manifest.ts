/**
 * The artefact of a multi-stage model version (recall → rank → re-rank): a small JSON manifest in the object store
 * naming each stage's ONNX graph by URI and sha256. The version's `recsys.onnx.uri` points at it (and
 * `recsys.onnx.sha256` is its checksum) when `recsys.onnx.kind` is `cascade`, so one checksum pins every graph.
 * The export activity writes it; serving reads it. Stage graph signatures (models/cascade_export.py):
 *   recall  history int64 [B, L] -> scores float32 [B, N], items int64 [B, N]  (best first)
 *   rank    history int64 [B, L], candidates int64 [B, C] -> scores float32 [B, C]
 *   rerank  history int64 [B, L], candidates int64 [B, C], rank_scores float32 [B, C] -> scores float32 [B, C]
 */
import { z } from 'zod';

/** What a version's `recsys.onnx.uri` holds: one retrieval graph, or a cascade manifest. */
export const ARTIFACT_KINDS = ['single', 'cascade'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

export const CASCADE_STAGES = ['recall', 'rank', 'rerank'] as const;
export type CascadeStageName = (typeof CASCADE_STAGES)[number];

export const CascadeStage = z.object({
  name: z.enum(CASCADE_STAGES),
  uri: z.string().startsWith('s3://'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  /** recall: N candidates; rank: M kept for the re-ranker; rerank: K, the final list's length. */
  topK: z.number().int().positive(),
});
export type CascadeStage = z.infer<typeof CascadeStage>;

export const CascadeManifest = z
  .object({
    kind: z.literal('cascade'),
    historyLen: z.number().int().positive(),
    nItems: z.number().int().positive(),
    stages: z.array(CascadeStage).length(CASCADE_STAGES.length),
  })
  .superRefine((m, ctx) => {
    m.stages.forEach((s, i) => {
      if (s.name !== CASCADE_STAGES[i])
        ctx.addIssue({ code: 'custom', path: ['stages', i, 'name'], message: `must be '${CASCADE_STAGES[i]}'` });
    });
  });
export type CascadeManifest = z.infer<typeof CascadeManifest>;

/** The manifest in `text`, or an error naming the field that is wrong and its value. */
export function parseCascadeManifest(text: string, where: string): CascadeManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`);
  }
  const parsed = CascadeManifest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${where}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** The stage of a manifest by name (the schema guarantees each is present, in order). */
export function stageOf(m: CascadeManifest, name: CascadeStageName): CascadeStage {
  return m.stages[CASCADE_STAGES.indexOf(name)]!;
}
