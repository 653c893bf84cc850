/**
 * An HNSW index over a model's item embeddings (usearch), for catalogues where exact top-k per request costs too
 * much. Metric: inner product, the score the retrieval graphs rank by. Keys are 1-based item indices (row j of the
 * item matrix is item j + 1), as the graphs' `items` output.
 *
 * The graph's neighbourhoods can be chosen by inner product (`graph: 'ip'`, ip-NSW: Morozov & Babenko, NeurIPS 2018)
 * or by angle (`'angular'`, the idea of ip-NSW+: Liu et al., AAAI 2020); the search ranks by inner product either
 * way. An inner-product graph links items to the few largest-norm ones (hubs) when the embeddings share a common
 * direction (a trained two-tower's items do: their mean is ~70% of their norm), leaving many items unreachable, so
 * its recall stops short of 0.99 however deep it searches (MovieLens-100K two-tower: 0.92 at depth 1024, the
 * angular graph 0.997 at 64; bench/retrieval.ts). On unstructured embeddings (no common direction, variance in every
 * direction) the inner-product graph needs the shallower search. The angular build costs ~3x (cosine distances).
 * serving/retrieval/build-tuned.ts tries both. usearch builds an angular graph with its cosine metric; the file is
 * then relabelled inner product (the graph does not record its metric, and the vectors are stored as given) and
 * loaded back: an ordinary inner-product index.
 *
 * Two usearch details this module hides:
 * - usearch reports inner-product *distances* as 1 - dot; we return scores = 1 - distance (the dot product, to
 *   float32 rounding).
 * - usearch's JavaScript API fixes the search depth (expansion_search) at construction and has no setter. Its
 *   search explores max(expansion_search, wanted) candidates and returns the best `wanted`, so we build with
 *   expansion_search = 1 and ask for max(k, expansionSearch): the best k of those are exactly what a search with
 *   expansion_search = expansionSearch returns, and the depth can change per version without a rebuild.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Index, MetricKind, ScalarKind, type BatchMatches, type Matches } from 'usearch';
import { z } from 'zod';
import type { HnswGraph } from '../../lib/ann-manifest';
import { messageOf } from '../errors';
import { F32_SCALAR, readIndexHeader, setIndexMetric } from './index-file';
import { checkDims, checkFinite, checkK, rowsOf, type TopKResult } from './matrix';

const positiveInt = z.number().int().min(1);
export const hnswParamsSchema = z.object({
  /** Graph degree (M): more links, better recall, bigger index and slower build. */
  connectivity: z.number().int().min(2),
  /** Candidates explored while inserting (efConstruction). */
  expansionAdd: positiveInt,
  /** Candidates explored per search (ef); tuned per version by tuneExpansion. */
  expansionSearch: positiveInt,
});
export type HnswParams = z.infer<typeof hnswParamsSchema>;

export const DEFAULT_HNSW: HnswParams = { connectivity: 16, expansionAdd: 128, expansionSearch: 64 };

/** See the header: the depth that makes usearch's own depth irrelevant. */
const NATIVE_EXPANSION_SEARCH = 1;
/** What `search` returns for a slot the graph could not fill (fewer reachable items than k: never on a sane index). */
export const MISSING_KEY = 0n;

function checkParams(params: unknown, what: string): HnswParams {
  const parsed = hnswParamsSchema.safeParse(params);
  if (!parsed.success)
    throw new RangeError(`${what}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** How the graph's neighbourhoods are chosen (lib/ann-manifest.ts); searches rank by inner product either way. */
export type { HnswGraph };

export interface BuildOptions {
  /** Build threads; default every core. */
  threads?: number;
  /** Default 'ip'. */
  graph?: HnswGraph;
}

function nativeIndex(dims: number, params: HnswParams, metric = MetricKind.IP): Index {
  return new Index({
    dimensions: dims,
    metric,
    quantization: ScalarKind.F32,
    connectivity: params.connectivity,
    expansion_add: params.expansionAdd,
    expansion_search: NATIVE_EXPANSION_SEARCH,
    multi: false,
  });
}

/**
 * Where query q's matches are and how many there are. usearch's overloads claim Matches for any typed array, but a
 * batch gives BatchMatches (rows of `wanted`, counts per query); one query gives Matches cut to what it found.
 */
function rowOf(found: Matches | BatchMatches, q: number, wanted: number): { count: number; from: number } {
  return 'counts' in found
    ? { count: Number(found.counts[q]), from: q * wanted }
    : { count: found.keys.length, from: 0 };
}

/** Use buildHnsw or HnswIndex.load; the constructor wraps an already filled usearch index. */
export class HnswIndex {
  readonly size: number;

  constructor(
    private readonly native: Index,
    readonly dims: number,
    public params: HnswParams,
  ) {
    this.size = native.size();
  }

  /**
   * queries row-major [b, dims] -> per query the best k (keys 1-based item indices, scores = inner products, best
   * first), row-major [b * k]. `threads`: usearch worker threads for a batch (one query always runs on the caller's).
   */
  search(queries: Float32Array, k: number, threads = 1): TopKResult {
    const b = rowsOf(queries, this.dims, 'queries');
    checkK(k, this.size);
    const keys = new BigInt64Array(b * k);
    const scores = new Float32Array(b * k);
    if (b === 0) return { keys, scores };
    const wanted = Math.max(k, this.params.expansionSearch);
    const found = this.native.search(queries, wanted, threads);
    for (let q = 0; q < b; q++) {
      const { count, from } = rowOf(found, q, wanted);
      for (let j = 0; j < k; j++) {
        const out = q * k + j;
        if (j < count) {
          keys[out] = BigInt.asIntN(64, found.keys[from + j]!);
          scores[out] = 1 - found.distances[from + j]!;
        } else {
          keys[out] = MISSING_KEY;
          scores[out] = -Infinity;
        }
      }
    }
    return { keys, scores };
  }

  setExpansionSearch(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`expansionSearch must be a positive integer, got ${n}`);
    this.params = { ...this.params, expansionSearch: n };
  }

  /** Writes usearch's own file format, atomically (a temporary name, then a rename). */
  async save(file: string): Promise<void> {
    const partial = `${file}.partial-${process.pid}`;
    try {
      this.native.save(partial);
      await rename(partial, file);
    } catch (err) {
      await rm(partial, { force: true });
      throw new Error(`cannot save the HNSW index to ${file}: ${messageOf(err)}`, { cause: err });
    }
  }

  /**
   * Loads a saved index into memory. Fails naming the file and what does not match: not a usearch index, metric
   * (must be inner product), scalar type (f32), dims, connectivity, or item count (`size`, when given: the version's
   * catalogue). `params.expansionSearch` is the depth it searches with.
   */
  static load(file: string, dims: number, params: HnswParams, size?: number): Promise<HnswIndex> {
    // Every step is synchronous today (usearch loads synchronously); a throw becomes the promise's rejection.
    return new Promise((resolve) => resolve(HnswIndex.open(file, dims, params, size)));
  }

  private static open(file: string, dims: number, params: HnswParams, size?: number): HnswIndex {
    checkDims(dims);
    const checked = checkParams(params, `HNSW index ${file}: params`);
    const fail = (what: string) => new Error(`HNSW index ${file}: ${what}`);
    let header;
    try {
      header = readIndexHeader(file);
    } catch (err) {
      throw fail(messageOf(err));
    }
    if (header.metric !== 'i') throw fail(`metric '${header.metric}' in the file, expected 'i' (inner product)`);
    if (header.scalar !== F32_SCALAR)
      throw fail(`scalar kind ${header.scalar} in the file, expected f32 (${F32_SCALAR})`);
    if (header.dims !== dims) throw fail(`dims ${header.dims} in the file, expected ${dims}`);
    if (size !== undefined && header.size !== size)
      throw fail(`size ${header.size} items in the file, expected ${size}`);
    if (header.size < 1 || header.deleted !== 0)
      throw fail(`${header.size} items (${header.deleted} deleted): expected a full catalogue`);
    const native = nativeIndex(dims, checked);
    try {
      native.load(file);
    } catch (err) {
      throw fail(`usearch cannot load it: ${messageOf(err)}`);
    }
    if (native.dimensions() !== dims) throw fail(`dims ${native.dimensions()} after loading, expected ${dims}`);
    if (native.size() !== header.size)
      throw fail(`${native.size()} items after loading, the header says ${header.size}`);
    if (native.connectivity() !== checked.connectivity)
      throw fail(`connectivity ${native.connectivity()} in the file, expected ${checked.connectivity}`);
    // Keys must be the 1-based item indices: the first and last item present, no item 0.
    const present = native.contains(new BigUint64Array([1n, BigInt(header.size), 0n])) as boolean[];
    if (!present[0] || !present[1] || present[2]) throw fail(`keys are not the item indices 1..${header.size}`);
    return new HnswIndex(native, dims, checked);
  }
}

/**
 * items row-major float32 [n, dims]; row j is item j + 1 (1-based keys, as the graphs' `items` output). Metric:
 * inner product (scores = dot products, the graphs' scores), whichever way the graph is built (`opts.graph`).
 */
export function buildHnsw(
  items: Float32Array,
  dims: number,
  params?: Partial<HnswParams>,
  opts: BuildOptions | number = {},
): HnswIndex {
  // A number: the build threads (the first form of this function, kept for its callers).
  const { threads = os.availableParallelism(), graph = 'ip' } = typeof opts === 'number' ? { threads: opts } : opts;
  const n = rowsOf(items, dims, 'items');
  if (n < 1) throw new RangeError('items: empty (no rows)');
  checkFinite(items, dims, 'items');
  const checked = checkParams({ ...DEFAULT_HNSW, ...params }, 'HNSW params');
  const native = nativeIndex(dims, checked, graph === 'angular' ? MetricKind.Cos : MetricKind.IP);
  const keys = new BigUint64Array(n);
  for (let j = 0; j < n; j++) keys[j] = BigInt(j + 1);
  native.add(keys, items, threads);
  return new HnswIndex(graph === 'angular' ? asInnerProduct(native, dims, checked) : native, dims, checked);
}

/** The same graph and vectors, searched by inner product: through a file relabelled 'i' (see the header). */
function asInnerProduct(angular: Index, dims: number, params: HnswParams): Index {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'recsys-hnsw-'));
  try {
    const file = path.join(dir, 'angular.usearch');
    angular.save(file);
    setIndexMetric(file, 'i');
    const native = nativeIndex(dims, params);
    native.load(file);
    return native;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
