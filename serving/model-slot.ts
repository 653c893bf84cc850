/**
 * The single-model view of the serving versions, kept as a name because the server, the CLI, the benchmark and the
 * tests grew up with it: ModelSlot is the ModelPool (model-pool.ts), and ModelSlot.load(ref) is the single-model
 * behaviour (load and check the version while the current one keeps serving, route all traffic to it in one
 * assignment, release the old one after its last in-flight request; a failed load changes nothing but `lastError`).
 * Several versions at once and the traffic policy over them are the pool's loadVersion / setPolicy / unload.
 */
export { ModelPool as ModelSlot, type LoadOutcome } from './model-pool';
