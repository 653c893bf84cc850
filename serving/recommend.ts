/**
 * One Recommend request against one loaded version: pick the history (the request's, else the user's latest in the
 * dataset), rank with the model or fall back to popularity, and drop what must not be returned.
 */
import type { Catalog } from './catalog';
import { historyIndices } from './history';
import type { ItemMarks } from './item-marks';
import type { Ranker } from './onnx-ranker';
import type { FallbackReason, RecommendRequest } from './proto';
import { pickFromModel, pickPopular, type ScoredItemOut } from './ranking';

export interface Recommendation {
  items: ScoredItemOut[];
  fallback: boolean;
  fallbackReason: FallbackReason;
}

/** The parts of a loaded version that ranking uses (LoadedModel has them; unit tests build them by hand). */
export interface RankingModel {
  catalog: Catalog;
  ranker: Ranker;
  excluded: ItemMarks;
}

function markExcludes(excluded: ItemMarks, catalog: Catalog, ids: readonly string[]): void {
  for (const id of ids) excluded.mark(catalog.indexOf(id));
}

/** Assumes a valid request (validate.ts). Rejects only when the model's inference fails. */
export async function recommend(model: RankingModel, req: RecommendRequest): Promise<Recommendation> {
  const { catalog, ranker, excluded } = model;
  let indices: Int32Array | undefined;
  let n = 0;
  if (req.history.length > 0) {
    // Small and short-lived; cheaper than looking the ids up again after inference to exclude them.
    indices = new Int32Array(req.history.length);
    n = historyIndices(req.history, catalog, indices);
  }
  if (n === 0) {
    indices = catalog.users.of(req.user_id);
    n = indices?.length ?? 0;
  }
  if (n === 0 || !indices) {
    excluded.begin();
    markExcludes(excluded, catalog, req.exclude_item_ids);
    return {
      items: pickPopular(req.k, excluded, catalog),
      fallback: true,
      fallbackReason: req.history.length > 0 ? 'FALLBACK_REASON_NO_KNOWN_ITEMS' : 'FALLBACK_REASON_NO_HISTORY',
    };
  }
  const top = await ranker.rank(indices, n);
  // From here to the return everything is synchronous: the shared ItemMarks belong to this request alone.
  excluded.begin();
  for (let i = 0; i < n; i++) excluded.mark(indices[i]!);
  markExcludes(excluded, catalog, req.exclude_item_ids);
  return {
    items: pickFromModel(top.items, top.scores, req.k, excluded, catalog),
    fallback: false,
    fallbackReason: 'FALLBACK_REASON_UNSPECIFIED',
  };
}
