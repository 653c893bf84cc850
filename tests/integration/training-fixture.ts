/** A small synthetic dataset in the object store and a fast training config, shared by the workflow tests. */

/**
 * A small world where a model has something to learn: users active during most of a short window, so the test
 * window holds users with histories (the default shape's test users are mostly new, where popularity is all there
 * is), and a flatter popularity head. Used where a test needs a model that really beats popularity.
 */
export const LEARNABLE_SHAPE: Partial<SyntheticOptions> = {
  users: 600,
  items: 300,
  interactions: 30_000,
  spanDays: 20,
  popularityExponent: 1,
  preferenceStrength: 0.9,
};
/** A training config that learns LEARNABLE_SHAPE's world in seconds (NDCG@10 ≈ +0.1 over popularity, CI above 0). */
export const LEARNING_CONFIG = { embedding_dim: 32, hidden_dim: 64, history_len: 30, epochs: 5 };
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { config } from '../../lib/config';
import { writeSyntheticLog, type SyntheticOptions } from '../data/synthetic';
import { objectStore } from '../../lib/object-store';
import { createTrainingWorker } from '../../worker/create-worker';
import { continuousTraining } from '../../workflows/continuous-training';
import { type ContinuousTrainingInput, type ContinuousTrainingResult } from '../../workflows/training-api';
import { uniqueName, type TemporalTestConnections } from './stack';

export async function smallDatasetSource(
  name: string,
  shape: Partial<SyntheticOptions> = { users: 300, items: 150, interactions: 12_000 },
): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-it-'));
  try {
    const file = path.join(dir, 'interactions.csv');
    await writeSyntheticLog(file, { minPerUser: 20, seed: 11, ...shape });
    const uri = `s3://${config().bucket}/raw/${name}/interactions.csv`;
    await objectStore().putFile(uri, file);
    return uri;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export function trainingInput(
  model: string,
  dataset: string,
  source: string,
  train: Record<string, unknown>,
): ContinuousTrainingInput {
  return {
    model,
    dataset: {
      name: dataset,
      sources: [source],
      etl: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
    },
    train: { embedding_dim: 16, hidden_dim: 32, history_len: 20, batch_size: 256, ...train },
    nprocPerNode: 2,
    topK: 20,
    // Rollouts deploy serving processes: the tests that want one ask for it.
    autoRollout: false,
  };
}

/** True while any process of the group `pgid` is alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value: T | undefined;
    try {
      value = await probe();
    } catch (err) {
      // A probe that knows the wait is hopeless throws a plain Error; transient RPC errors are retried.
      if (err instanceof Error && err.message.includes('ended before')) throw err;
    }
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Trains and registers a tiny model through a real continuousTraining run on a private task queue. */
export async function trainTinyModel(
  temporal: TemporalTestConnections,
  prefix: string,
  train: Record<string, unknown>,
  shape?: Partial<SyntheticOptions>,
): Promise<{ model: string; trained: ContinuousTrainingResult }> {
  const model = uniqueName(prefix);
  const dataset = uniqueName('it-ds');
  const source = await smallDatasetSource(dataset, shape);
  const taskQueue = uniqueName(prefix);
  const worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  const handle = await temporal.client.workflow.start(continuousTraining, {
    taskQueue,
    workflowId: `train-${model}-${dataset}`,
    args: [trainingInput(model, dataset, source, train)],
  });
  return { model, trained: await worker.runUntil(handle.result()) };
}
