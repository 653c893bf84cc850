/**
 * Offline evaluation activity: full-ranking Recall/NDCG/HR@k and MRR of the trained model on the test split, beside a
 * popularity baseline on the same split (models/evaluate.py). The report is stored next to the training outputs and
 * reused when the same training is evaluated again.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { withTempDir } from '../lib/files';
import { objectStore } from '../lib/object-store';
import type { DatasetRef } from './etl';
import { localDataset } from './dataset-cache';
import { runPython } from './python-process';
import { localModel, type TrainResult } from './training';

export type MetricSet = Record<string, number>;

export interface EvaluationResult {
  reportUri: string;
  k: number;
  model: MetricSet;
  popularity: MetricSet;
  nUsers: number;
  nColdUsers: number;
  reused: boolean;
}

export async function evaluate(input: {
  dataset: DatasetRef;
  training: TrainResult;
  k?: number;
}): Promise<EvaluationResult> {
  const ctx = Context.current();
  const k = input.k ?? 10;
  const store = objectStore();
  const reportUri = `${input.training.uri}evaluation-k${k}.json`;
  const summaryUri = `${input.training.uri}evaluation-k${k}.summary.json`;
  const existing = await store.getJson(summaryUri);
  if (existing !== undefined) return { ...(existing as EvaluationResult), reused: true };

  const ticker = setInterval(() => ctx.heartbeat({ stage: 'evaluate' }), 5000);
  try {
    const dataDir = await localDataset(input.dataset);
    return await withTempDir('eval', async (work) => {
      const modelPath = await localModel(input.training.modelUri, work);
      const out = path.join(work, 'report.json');
      const result = await runPython({
        module: 'models.evaluate',
        args: ['--data-dir', dataDir, '--model', modelPath, '--out', out, '--k', String(k)],
        signal: ctx.cancellationSignal,
      });
      const metrics = result.metrics as { model: MetricSet; popularity: MetricSet };
      await store.putFile(reportUri, out);
      const summary: EvaluationResult = {
        reportUri,
        k,
        model: metrics.model,
        popularity: metrics.popularity,
        nUsers: result.n_users as number,
        nColdUsers: result.n_cold_users as number,
        reused: false,
      };
      await store.putJson(summaryUri, summary);
      return summary;
    });
  } finally {
    clearInterval(ticker);
  }
}
