/** Turns ranked item indices into the response's items: skips excluded indices, maps indices to ids, stops at k. */
import type { Catalog } from './catalog';
import type { ItemMarks } from './item-marks';

export interface ScoredItemOut {
  item_id: string;
  score: number;
}

/** The graph's output row (best first) as at most k items, excluded and unmappable indices skipped. */
export function pickFromModel(
  items: BigInt64Array,
  scores: Float32Array,
  k: number,
  excluded: ItemMarks,
  catalog: Catalog,
): ScoredItemOut[] {
  const out: ScoredItemOut[] = [];
  for (let j = 0; j < items.length && out.length < k; j++) {
    const idx = Number(items[j]);
    if (excluded.has(idx)) continue;
    const id = catalog.idOf(idx);
    if (id !== undefined) out.push({ item_id: id, score: scores[j]! });
  }
  return out;
}

/** An item's recent popularity from the online store: interest events in a decayed window. */
export interface RecentPopularity {
  itemId: string;
  score: number;
}

/**
 * The k most popular items that are not excluded: first by recent popularity in the online store (`recent`, best
 * first, scored by their share of the listed interest), then by share of training interactions. Items the catalogue
 * does not know (the model could not have ranked them either) are skipped. Marks what it picks in `excluded`.
 */
export function pickPopular(
  k: number,
  excluded: ItemMarks,
  catalog: Catalog,
  recent?: readonly RecentPopularity[],
): ScoredItemOut[] {
  const out: ScoredItemOut[] = [];
  if (recent && recent.length > 0) {
    let total = 0;
    for (const r of recent) total += r.score;
    for (let j = 0; j < recent.length && out.length < k && total > 0; j++) {
      const idx = catalog.indexOf(recent[j]!.itemId);
      if (idx <= 0 || excluded.has(idx)) continue;
      excluded.mark(idx);
      out.push({ item_id: recent[j]!.itemId, score: recent[j]!.score / total });
    }
  }
  const { popular, popularScore } = catalog;
  for (let j = 0; j < popular.length && out.length < k; j++) {
    const idx = popular[j]!;
    if (excluded.has(idx)) continue;
    excluded.mark(idx);
    out.push({ item_id: catalog.idOf(idx)!, score: popularScore[j]! });
  }
  return out;
}
