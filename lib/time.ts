/** Waiting, outside workflow code (workflows use Temporal's own `sleep`, which is durable). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `work`, calling `tick` every `everyMs` until it settles: progress for work that is quiet for a while. */
export async function withTicker<T>(everyMs: number, tick: () => void, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(tick, everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
