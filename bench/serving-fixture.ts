/**
 * What the serving benchmark's processes share: the synthetic catalogue of a graph (item ids `i1`..`iN`, and the
 * request users' histories as its dataset's), the requests sent (fixed seed, so every server under test answers the
 * same ones) and a ModelLoader that serves a local ONNX file through the real path (OnnxRanker signature check,
 * warm-up, LoadedModel) instead of MLflow + S3: the registry and the object store only matter at load time, never
 * per request.
 */
import { Catalog, UserHistories } from '../serving/catalog';
import { LoadedModel } from '../serving/loaded-model';
import type { ModelLoader } from '../serving/model-loader';
import type { ServableVersion } from '../serving/model-version';
import { OnnxRanker } from '../serving/onnx-ranker';
import type { RecommendRequest } from '../serving/proto';

/** One graph as bench/serving_models.py describes it. */
export interface BenchGraph {
  n_items: number;
  precision: 'fp32' | 'int8';
  path: string;
  history_len: number;
  top_k: number;
}

/** Items per request history: a typical recent-activity window, shorter than the graph's history_len (50). */
export const HISTORY_ITEMS = 20;
export const K = 10;
const DISTINCT_REQUESTS = 512;

export const itemId = (index: number) => `i${index}`;

/**
 * The catalogue of a graph: items `i1`..`iN`, and as its dataset's users the request users `u0`..`u511`, each with the
 * history its bench request sends (same items, same order). A request that sends its history ranks exactly that; a
 * request with only the user id (bench/online-path.ts' dataset fallback) ranks the same items from here.
 */
export function syntheticCatalog(nItems: number): Catalog {
  const ids = [''];
  for (let i = 1; i <= nItems; i++) ids.push(itemId(i));
  // Popularity is only the fallback, which the benchmark's requests (all with known histories) never take.
  const popular = Int32Array.from({ length: Math.min(nItems, 1000) }, (_, j) => j + 1);
  return new Catalog(ids, popular, new Float32Array(popular.length).fill(1 / nItems), datasetUsers(nItems));
}

function datasetUsers(nItems: number): UserHistories {
  const requests = benchRequests(nItems);
  const index = new Map<string, number>();
  const offsets = new Int32Array(requests.length + 1);
  const items = new Int32Array(requests.length * HISTORY_ITEMS);
  let n = 0;
  for (const [u, r] of requests.entries()) {
    index.set(r.user_id, u);
    // Item ids are `i<index>` (itemId), so the index is the id's number.
    for (const h of r.history) items[n++] = Number(h.item_id.slice(1));
    offsets[u + 1] = n;
  }
  return new UserHistories(index, offsets, items.subarray(0, n));
}

/** A small deterministic PRNG (mulberry32): the same requests in every process and every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function benchRequests(nItems: number): RecommendRequest[] {
  const rand = prng(42);
  const t0 = 1_700_000_000_000;
  return Array.from({ length: DISTINCT_REQUESTS }, (_, r) => ({
    user_id: `u${r}`,
    history: Array.from({ length: HISTORY_ITEMS }, (_, j) => ({
      item_id: itemId(1 + Math.floor(rand() * nItems)),
      timestamp_ms: t0 + j * 60_000,
    })),
    k: K,
    exclude_item_ids: [],
  }));
}

export function benchVersion(g: BenchGraph): ServableVersion {
  return {
    name: `bench-two-tower-${g.n_items}-${g.precision}`,
    version: '1',
    aliases: [],
    kind: 'single',
    onnxUri: `file://${g.path}`,
    onnxSha256: '',
    topK: g.top_k,
    historyLen: g.history_len,
    dataset: { name: 'bench-synthetic', version: String(g.n_items), uri: '' },
  };
}

/** Loads the local graph with the same checks as registryLoader, minus the download and its checksum. */
export function localLoader(g: BenchGraph): ModelLoader {
  return {
    resolve: () => Promise.resolve(benchVersion(g)),
    async load(version) {
      const label = `models:/${version.name}/${version.version}`;
      const ranker = await OnnxRanker.open(label, g.path, version);
      const catalog = syntheticCatalog(g.n_items);
      await ranker.warmUp(label, catalog);
      return new LoadedModel(version, ranker, catalog);
    },
  };
}
