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

/** A history: item indices[0..n), oldest first, and when known the epoch ms of each (times[0..n)). */
interface Indexed {
  indices: Int32Array;
  times?: Float64Array;
  n: number;
}

/**
 * The dataset's history (older) followed by the store's events (newer), without the dataset items the store holds
 * again: a user's first click adds to what the model knew of them instead of replacing it, and a store that was
 * backfilled from the dataset (which then holds those items itself) is taken as it is.
 */
function afterDataset(
  dataset: Int32Array | undefined,
  datasetTimes: Float64Array | undefined,
  store: Indexed,
): Indexed {
  if (!dataset || dataset.length === 0) return store;
  const { n } = store;
  const inStore = new Set(store.indices.subarray(0, n));
  const merged = new Int32Array(dataset.length + n);
  const times = store.times && datasetTimes ? new Float64Array(dataset.length + n) : undefined;
  let m = 0;
  dataset.forEach((i, j) => {
    if (inStore.has(i)) return;
    if (times) times[m] = datasetTimes![j]!;
    merged[m++] = i;
  });
  merged.set(store.indices.subarray(0, n), m);
  if (times) times.set(store.times!.subarray(0, n), m);
  return { indices: merged, ...(times && { times }), n: m + n };
}

function known(history: readonly TimedItem[], catalog: Catalog, nowMs: number): Indexed {
  // Small and short-lived; cheaper than looking the ids up again after inference to exclude them.
  const indices = new Int32Array(history.length);
  const times = new Float64Array(history.length);
  return { indices, times, n: historyIndices(history, catalog, indices, times, nowMs) };
}

/** Assumes a valid request (validate.ts). Rejects only when the model's inference fails. */
export async function recommend(
  model: RankingModel,
  req: RecommendRequest,
  online?: OnlineReader,
): Promise<Recommendation> {
  const { catalog, ranker, excluded } = model;
  const nowMs = Date.now();
  let h: Indexed = { indices: new Int32Array(0), n: 0 };
  let historySource: HistorySource = 'HISTORY_SOURCE_NONE';
  let storeDegraded = false;
  if (req.history.length > 0) {
    h = known(req.history, catalog, nowMs);
    if (h.n > 0) historySource = 'HISTORY_SOURCE_REQUEST';
  }
  if (h.n === 0 && online) {
    const read = await online.history(req.user_id);
    if (read.status === 'ok') {
      h = known(read.items, catalog, nowMs);
      if (h.n > 0) {
        h = afterDataset(catalog.users.of(req.user_id), catalog.users.timesOf(req.user_id), h);
        historySource = 'HISTORY_SOURCE_ONLINE_STORE';
      }
    } else storeDegraded = true;
  }
  if (h.n === 0) {
    const dataset = catalog.users.of(req.user_id);
    const times = catalog.users.timesOf(req.user_id);
    if (dataset && dataset.length > 0) {
      h = { indices: dataset, ...(times && { times }), n: dataset.length };
      historySource = 'HISTORY_SOURCE_DATASET';
    }
  }
  const { indices, n } = h;
  if (n === 0) {
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
  const top = await ranker.rank(indices, n, { times: h.times, nowMs });
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
