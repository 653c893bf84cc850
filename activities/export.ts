/**
 * Export activity: the serving graph (user tower + item embeddings + TopK) as ONNX, checked against PyTorch's output
 * within a stated tolerance by models/export.py before it is stored. Reused when the same training is exported again.
 * When the config asks for HNSW retrieval, the index is built, checked and attached too (activities/ann-index.ts);
 * the exact graph stays the version's artefact either way.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { ARTIFACT_KINDS, CASCADE_STAGES, type CascadeManifest, type CascadeStage } from '../lib/cascade-manifest';
import { z } from 'zod';
import { fileDigest } from '../lib/files';
import { ExportResult, type ExportInput } from './contracts';
import type { ActivityDeps } from './deps';
import { attachAnnIndex, PyAnn, type AnnOutcome } from './ann-index';
import { runPythonStep } from './python-step';
import { localModel } from './training';

// The result line of models/export.py (its module docstring); only the fields the summary keeps.
const PyStage = z.object({
  name: z.enum(CASCADE_STAGES),
  path: z.string(),
  top_k: z.number().int(),
  max_abs_diff: z.number(),
});
const PyResult = z.object({
  max_abs_diff: z.number(),
  tolerance: z.number(),
  top_k: z.number().int(),
  history_len: z.number().int(),
  n_items: z.number().int(),
  opset: z.number().int(),
  kind: z.enum(ARTIFACT_KINDS).default('single'),
  stages: z.array(PyStage).optional(),
  ann: PyAnn.optional(),
});
type PyResult = z.infer<typeof PyResult>;

/**
 * A cascade's stage graphs go up first, each under its checksum's name beside the manifest, then the manifest that
 * names them: the manifest's URI is what a version points at, so it never names a graph that is not stored.
 */
async function storeCascade(
  store: ActivityDeps['store'],
  manifestUri: string,
  result: PyResult,
  dir: string,
): Promise<{ manifestFile: string; stages: CascadeStage[] }> {
  if (!result.stages) throw new Error('models.export returned kind cascade without stages');
  const stages: CascadeStage[] = [];
  for (const s of result.stages) {
    const { sha256, bytes } = await fileDigest(s.path);
    const uri = manifestUri.replace(/[^/]*$/, `stage-${s.name}-${sha256.slice(0, 16)}.onnx`);
    await store.putFile(uri, s.path);
    stages.push({ name: s.name, uri, sha256, bytes, topK: s.top_k });
  }
  const manifest: CascadeManifest = {
    kind: 'cascade',
    historyLen: result.history_len,
    nItems: result.n_items,
    stages,
  };
  const manifestFile = path.join(dir, 'cascade.json');
  await fs.writeFile(manifestFile, JSON.stringify(manifest, null, 2) + '\n');
  return { manifestFile, stages };
}

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
          // A cascade's version points at its manifest; a single model's at its graph.
          const manifestUri = `${input.training.uri}cascade-top${topK}.json`;
          const cascade =
            result.kind === 'cascade' ? await storeCascade(store, manifestUri, result, ctx.dir) : undefined;
          const artefact = cascade?.manifestFile ?? out;
          const artefactUri = cascade ? manifestUri : onnxUri;
          const { sha256, bytes } = await fileDigest(artefact);
          await store.putFile(artefactUri, artefact);
          // An HNSW index beside the exact graph, when models.export wrote its inputs (config `retrieval`).
          const ann: AnnOutcome | undefined =
            result.ann && result.kind === 'single'
              ? await attachAnnIndex(ctx, store, result.ann, { exactUri: onnxUri, historyLen: result.history_len })
              : undefined;
          return {
            onnxUri: artefactUri,
            sha256,
            bytes,
            maxAbsDiff: result.max_abs_diff,
            tolerance: result.tolerance,
            topK: result.top_k,
            historyLen: result.history_len,
            nItems: result.n_items,
            opset: result.opset,
            kind: result.kind,
            ...(cascade && { stages: cascade.stages }),
            ...(ann && 'attached' in ann && { ann: ann.attached }),
            ...(ann && 'rejected' in ann && { annRejected: ann.rejected }),
            reused: false,
          };
        },
      });
    },
  };
}
