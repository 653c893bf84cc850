/**
 * Builds the HNSW index a version may serve: for each graph kind in turn (inner product first, then angular: see
 * serving/retrieval/hnsw.ts), build it and tune its search depth on the version's own queries; the first whose
 * recall@k reaches the target is the one. The exact reference is computed once for all attempts.
 */
import { HNSW_GRAPHS } from '../../lib/ann-manifest';
import { exactTopK } from './exact-top-k';
import { buildHnsw, type HnswGraph, type HnswIndex, type HnswParams } from './hnsw';
import { tuneExpansion, type TuneOptions, type TuneResult } from './tune';

export interface BuildTunedOptions extends Omit<TuneOptions, 'exact' | 'onTry'> {
  params?: Partial<HnswParams>;
  /** Build threads; default every core. */
  threads?: number;
  /** Graph kinds to try, in order; default ['ip', 'angular']. */
  graphs?: HnswGraph[];
  /** Called before each build, after it, and after each depth tried. */
  onBuilding?: (graph: HnswGraph) => void;
  onBuilt?: (built: { graph: HnswGraph; buildSeconds: number }) => void;
  onTry?: (tried: { graph: HnswGraph; expansionSearch: number; recall: number }) => void;
}

export interface GraphAttempt {
  graph: HnswGraph;
  buildSeconds: number;
  /** Recall@k per depth tried, in order. */
  tried: TuneResult['tried'];
}

export interface TunedHnsw {
  /** The first graph kind that reached the target, with its index (depth set); undefined when none did. */
  chosen?: { index: HnswIndex; graph: HnswGraph; expansionSearch: number; recall: number };
  /** Every kind built, in order: why the ones before the chosen one (or all of them) fell short. */
  attempts: GraphAttempt[];
}

/** Every kind, the cheaper inner-product build first. */
export const DEFAULT_GRAPHS: HnswGraph[] = [...HNSW_GRAPHS];

export function buildTunedHnsw(
  items: Float32Array,
  dims: number,
  queries: Float32Array,
  opts: BuildTunedOptions = {},
): TunedHnsw {
  const { params, threads, graphs = DEFAULT_GRAPHS, k = 10, onBuilding, onBuilt, onTry, ...tune } = opts;
  if (graphs.length === 0) throw new RangeError('graphs: empty');
  const exact = exactTopK(items, dims, queries, k).keys;
  const attempts: GraphAttempt[] = [];
  for (const graph of graphs) {
    onBuilding?.(graph);
    const start = process.hrtime.bigint();
    const index = buildHnsw(items, dims, params, { threads, graph });
    const buildSeconds = Number(process.hrtime.bigint() - start) / 1e9;
    onBuilt?.({ graph, buildSeconds });
    const tried: TuneResult['tried'] = [];
    const tuned = tuneExpansion(index, items, queries, {
      ...tune,
      k,
      exact,
      onTry: (t) => {
        tried.push(t);
        onTry?.({ graph, ...t });
      },
    });
    attempts.push({ graph, buildSeconds, tried });
    if (tuned)
      return { chosen: { index, graph, expansionSearch: tuned.expansionSearch, recall: tuned.recall }, attempts };
  }
  return { attempts };
}
