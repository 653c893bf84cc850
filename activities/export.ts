/**
 * Export activity: the serving graph (user tower + item embeddings + TopK) as ONNX, checked against PyTorch's output
 * within a stated tolerance by models/export.py before it is stored. Reused when the same training is exported again.
 */
import path from 'node:path';
import { z } from 'zod';
import { fileDigest } from '../lib/files';
import { ExportResult, type ExportInput } from './contracts';
import type { ActivityDeps } from './deps';
import { runPythonStep } from './python-step';
import { localModel } from './training';

// The result line of models/export.py (its module docstring); only the fields the summary keeps.
const PyResult = z.object({
  max_abs_diff: z.number(),
  tolerance: z.number(),
  top_k: z.number().int(),
  history_len: z.number().int(),
  n_items: z.number().int(),
  opset: z.number().int(),
});

export function exportActivities(deps: ActivityDeps) {
  const { store } = deps;
  // Arrow functions, not methods: the worker and tests call activities detached from this object.
  return {
    exportOnnx: async (input: ExportInput): Promise<ExportResult> => {
      const topK = input.topK ?? 100;
      const onnxUri = `${input.training.uri}model-top${topK}.onnx`;
      return runPythonStep(deps, {
        name: 'export',
        summaryUri: `${onnxUri}.json`,
        summary: ExportResult,
        // A parity failure is a property of the model, not a transient fault: retrying would not help.
        nonRetryable: [{ python: 'ExportVerificationError', as: 'OnnxParityError' }],
        heartbeat: { stage: 'export' },
        work: async (ctx) => {
          const modelPath = await localModel(input.training.modelUri, ctx.dir, store);
          const out = path.join(ctx.dir, 'model.onnx');
          const result = await ctx.python({
            module: 'models.export',
            args: ['--model', modelPath, '--out', out, '--top-k', String(topK)],
            result: PyResult,
          });
          const { sha256, bytes } = await fileDigest(out);
          await store.putFile(onnxUri, out);
          return {
            onnxUri,
            sha256,
            bytes,
            maxAbsDiff: result.max_abs_diff,
            tolerance: result.tolerance,
            topK: result.top_k,
            historyLen: result.history_len,
            nItems: result.n_items,
            opset: result.opset,
            reused: false,
          };
        },
      });
    },
  };
}
