/**
 * What the quantization jobs print that both quantization paths read: a graph's (or a cascade's) figures as
 * models/quantize.py and models/cascade_quantize.py report them, and their progress events. Kept apart so the single
 * graph's activity (quantization.ts) and the cascade's (cascade-quantization.ts) parse them one way.
 */
import { z } from 'zod';
import type { GraphFigures } from './contracts';

// The figures at k = 10 (the activities pass --k 10): quality over the test split, latency per single-user request.
export const PyFigures = z.object({
  'ndcg@10': z.number(),
  'recall@10': z.number(),
  p50_ms: z.number(),
  p99_ms: z.number(),
});

export const figures = (f: z.infer<typeof PyFigures>): GraphFigures => ({
  ndcgAt10: f['ndcg@10'],
  recallAt10: f['recall@10'],
  p50Ms: f.p50_ms,
  p99Ms: f.p99_ms,
});

// Progress is shown as it comes (stage quantize | evaluate | time, with counts): every field goes to the heartbeat.
export const PyProgress = z.looseObject({ stage: z.string() });
export type QuantizeHeartbeat = z.infer<typeof PyProgress>;
