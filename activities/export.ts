/**
 * Export activity: the serving graph (user tower + item embeddings + TopK) as ONNX, checked against PyTorch's output
 * within a stated tolerance by models/export.py before it is stored. Reused when the same training is exported again.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { sha256File, withTempDir } from '../lib/files';
import { objectStore } from '../lib/object-store';
import { PythonStepError, runPython } from './python-process';
import { localModel, type TrainResult } from './training';

export interface ExportResult {
  onnxUri: string;
  sha256: string;
  bytes: number;
  maxAbsDiff: number;
  tolerance: number;
  topK: number;
  historyLen: number;
  nItems: number;
  opset: number;
  reused: boolean;
}

export async function exportOnnx(input: { training: TrainResult; topK?: number }): Promise<ExportResult> {
  const ctx = Context.current();
  const store = objectStore();
  const topK = input.topK ?? 100;
  const onnxUri = `${input.training.uri}model-top${topK}.onnx`;
  const summaryUri = `${onnxUri}.json`;
  const existing = await store.getJson(summaryUri);
  if (existing !== undefined) return { ...(existing as ExportResult), reused: true };

  return withTempDir('export', async (work) => {
    const modelPath = await localModel(input.training.modelUri, work);
    const out = path.join(work, 'model.onnx');
    let result;
    try {
      result = await runPython({
        module: 'models.export',
        args: ['--model', modelPath, '--out', out, '--top-k', String(topK)],
        signal: ctx.cancellationSignal,
      });
    } catch (err) {
      // A parity failure is a property of the model, not a transient fault: retrying would not help.
      if (err instanceof PythonStepError && err.errorType === 'ExportVerificationError')
        throw ApplicationFailure.nonRetryable(err.message, 'OnnxParityError');
      throw err;
    }
    const sha256 = await sha256File(out);
    const { size } = await fs.stat(out);
    await store.putFile(onnxUri, out);
    const summary: ExportResult = {
      onnxUri,
      sha256,
      bytes: size,
      maxAbsDiff: result.max_abs_diff as number,
      tolerance: result.tolerance as number,
      topK: result.top_k as number,
      historyLen: result.history_len as number,
      nItems: result.n_items as number,
      opset: result.opset as number,
      reused: false,
    };
    await store.putJson(summaryUri, summary);
    return summary;
  });
}
