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

/** The k most popular items that are not excluded, scored by their share of training interactions. */
export function pickPopular(k: number, excluded: ItemMarks, catalog: Catalog): ScoredItemOut[] {
  const out: ScoredItemOut[] = [];
  const { popular, popularScore } = catalog;
  for (let j = 0; j < popular.length && out.length < k; j++) {
    const idx = popular[j]!;
    if (excluded.has(idx)) continue;
    out.push({ item_id: catalog.idOf(idx)!, score: popularScore[j]! });
  }
  return out;
}
