/**
 * How long a server's shutdown takes at most: in-flight calls get DRAIN_GRACE_MS to finish, then the request log gets
 * LOG_SHIP_GRACE_MS to ship what is left (whatever it cannot ship is already in its spill directory). Whoever stops a
 * server with SIGTERM should wait SHUTDOWN_BUDGET_MS before SIGKILL: the two budgets plus releasing the models and
 * closing the metrics endpoint. A module of its own so that process managers (fleet/replicas.ts) read the numbers
 * without loading the server.
 */
export const DRAIN_GRACE_MS = 5_000;
export const LOG_SHIP_GRACE_MS = 8_000;
export const SHUTDOWN_BUDGET_MS = DRAIN_GRACE_MS + LOG_SHIP_GRACE_MS + 2_000;
