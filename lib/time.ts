/** Waiting, outside workflow code (workflows use Temporal's own `sleep`, which is durable). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Rejects with "<what> timed out after <ms> ms" unless `p` settles first. `p` itself may still complete later: use it
 * for work that is harmless to finish (idempotent uploads, reads).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `work`, calling `tick` every `everyMs` until it settles: progress for work that is quiet for a while. */
export async function withTicker<T>(everyMs: number, tick: () => void, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(tick, everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
