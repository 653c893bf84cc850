/**
 * One Recommend request against one loaded version: pick the history (the request's, else the user's recent
 * interactions in the online store after the user's latest in the dataset, else the dataset's alone), rank with the
 * model or fall back to popularity, and drop what must not be returned.
 */
import type { Catalog } from './catalog';
import { historyIndices, type TimedItem } from './history';
import type { ItemMarks } from './item-marks';
import type { RankTrace, Ranker } from './onnx-ranker';
import type { HistoryRead } from './online-store';
import type { FallbackReason, HistorySource, RecommendRequest } from './proto';
import { pickFromModel, pickPopular, type RecentPopularity, type ScoredItemOut } from './ranking';

export interface Recommendation {
  items: ScoredItemOut[];
  fallback: boolean;
  fallbackReason: FallbackReason;
  historySource: HistorySource;
  /** The online store was asked and did not answer: the history came from the dataset or nowhere. */
  storeDegraded: boolean;
  /** The route and stages of a multi-stage ranker; absent for a single graph or a fallback. */
  trace?: RankTrace;
}

/** The parts of a loaded version that ranking uses (LoadedModel has them; unit tests build them by hand). */
export interface RankingModel {
  catalog: Catalog;
  ranker: Ranker;
  excluded: ItemMarks;
}

/** The online store, bound to the catalogue's namespace: a user's recent interactions, and recent popularity. */
export interface OnlineReader {
  history(userId: string): Promise<HistoryRead>;
  /** Cached, never waits; undefined when the store has none to give. */
  popular(): readonly RecentPopularity[] | undefined;
}

function markExcludes(excluded: ItemMarks, catalog: Catalog, ids: readonly string[]): void {
  for (const id of ids) excluded.mark(catalog.indexOf(id));
}

/**
 * The dataset's history (older) followed by the store's events (newer), without the dataset items the store holds
 * again: a user's first click adds to what the model knew of them instead of replacing it, and a store that was
 * backfilled from the dataset (which then holds those items itself) is taken as it is.
 */
function afterDataset(
  dataset: Int32Array | undefined,
  store: Int32Array,
  n: number,
): { indices: Int32Array; n: number } {
  if (!dataset || dataset.length === 0) return { indices: store, n };
  const inStore = new Set(store.subarray(0, n));
  const merged = new Int32Array(dataset.length + n);
  let m = 0;
  for (const i of dataset) if (!inStore.has(i)) merged[m++] = i;
  merged.set(store.subarray(0, n), m);
  return { indices: merged, n: m + n };
}

function known(history: readonly TimedItem[], catalog: Catalog): { indices: Int32Array; n: number } {
  // Small and short-lived; cheaper than looking the ids up again after inference to exclude them.
  const indices = new Int32Array(history.length);
  return { indices, n: historyIndices(history, catalog, indices) };
}

/** Assumes a valid request (validate.ts). Rejects only when the model's inference fails. */
export async function recommend(
  model: RankingModel,
  req: RecommendRequest,
  online?: OnlineReader,
): Promise<Recommendation> {
  const { catalog, ranker, excluded } = model;
  let indices: Int32Array | undefined;
  let n = 0;
  let historySource: HistorySource = 'HISTORY_SOURCE_NONE';
  let storeDegraded = false;
  if (req.history.length > 0) {
    ({ indices, n } = known(req.history, catalog));
    if (n > 0) historySource = 'HISTORY_SOURCE_REQUEST';
  }
  if (n === 0 && online) {
    const read = await online.history(req.user_id);
    if (read.status === 'ok') {
      ({ indices, n } = known(read.items, catalog));
      if (n > 0) {
        ({ indices, n } = afterDataset(catalog.users.of(req.user_id), indices, n));
        historySource = 'HISTORY_SOURCE_ONLINE_STORE';
      }
    } else storeDegraded = true;
  }
  if (n === 0) {
    indices = catalog.users.of(req.user_id);
    n = indices?.length ?? 0;
    if (n > 0) historySource = 'HISTORY_SOURCE_DATASET';
  }
  if (n === 0 || !indices) {
    excluded.begin();
    markExcludes(excluded, catalog, req.exclude_item_ids);
    return {
      items: pickPopular(req.k, excluded, catalog, online?.popular()),
      fallback: true,
      fallbackReason: req.history.length > 0 ? 'FALLBACK_REASON_NO_KNOWN_ITEMS' : 'FALLBACK_REASON_NO_HISTORY',
      historySource,
      storeDegraded,
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
    historySource,
    storeDegraded,
    ...(top.trace && { trace: top.trace }),
  };
}
