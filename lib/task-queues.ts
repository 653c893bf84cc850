/**
 * Task queues. Workflows and the long, CPU-bound steps (ETL, training, evaluation, export) run on the main queue with
 * few activity slots; rollout control (deploys, canary analysis, registry moves, the load test) has a queue of its own
 * with its own slots, so a rollback never waits behind a six-hour training holding every training slot.
 */

/** The control queue that belongs to a main queue (derived, so tests with a queue of their own get one too). */
export const controlTaskQueue = (mainQueue: string): string => `${mainQueue}-control`;
