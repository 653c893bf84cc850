/**
 * The workflow bundle entry: every workflow the workers run. A worker registers every exported function as a workflow
 * type, so only workflows are exported here; their public surfaces (queries, updates, ids, types) are
 * workflows/rollout-api.ts and workflows/training-api.ts.
 */
export { continuousTraining } from './continuous-training';
export { rollout } from './rollout';
