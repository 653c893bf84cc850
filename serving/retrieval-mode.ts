/**
 * Whether serving may use a version's HNSW index: $RECSYS_RETRIEVAL = `auto` (the default: the index when the
 * version has one that verifies, else the exact graph) or `exact` (always the exact top-K graph, e.g. to compare the
 * two or to rule the index out while investigating). Read when the loader is set up; a bad value stops the server
 * with a message naming the variable and the value rather than serving in a mode nobody asked for.
 */
export const RETRIEVAL_ENV = 'RECSYS_RETRIEVAL';
export const RETRIEVAL_MODES = ['auto', 'exact'] as const;
export type RetrievalMode = (typeof RETRIEVAL_MODES)[number];

export function retrievalModeFromEnv(env: NodeJS.ProcessEnv = process.env): RetrievalMode {
  const raw = env[RETRIEVAL_ENV];
  if (raw === undefined || raw.trim() === '') return 'auto';
  const mode = raw.trim() as RetrievalMode;
  if (!RETRIEVAL_MODES.includes(mode))
    throw new Error(`$${RETRIEVAL_ENV} must be one of ${RETRIEVAL_MODES.join(', ')}, got ${JSON.stringify(raw)}`);
  return mode;
}
