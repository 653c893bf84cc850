/** Retrieval past exact top-k: the HNSW index, exact search (the reference and fallback) and the recall check. */
export { exactTopK } from './exact-top-k';
export {
  DEFAULT_HNSW,
  HnswIndex,
  MISSING_KEY,
  buildHnsw,
  hnswParamsSchema,
  type BuildOptions,
  type HnswGraph,
  type HnswParams,
} from './hnsw';
export {
  DEFAULT_GRAPHS,
  buildTunedHnsw,
  type BuildTunedOptions,
  type GraphAttempt,
  type TunedHnsw,
} from './build-tuned';
export type { TopKResult } from './matrix';
export { recallAtK } from './recall';
export { DEFAULT_CANDIDATES, tuneExpansion, type TuneOptions, type TuneResult } from './tune';
