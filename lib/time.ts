/** Waiting, outside workflow code (workflows use Temporal's own `sleep`, which is durable). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
