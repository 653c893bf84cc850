/**
 * Quantization activity: int8 dynamic quantization of the exported serving graph (models/quantize.py), gated on
 * quality and speed. Both graphs are evaluated on the same test split (full ranking) and timed on the same
 * single-user requests in paired runs; int8 ships only if its NDCG@10 stays within `tolerance` (relative) of the float
 * graph's and it is faster beyond the timer's noise: a p50 at least MIN_SPEEDUP lower, with the 95% paired-bootstrap
 * interval of the p50 ratio below 1 - MIN_SPEEDUP too. The int8 file is stored next to the float ONNX, keyed by the
 * float graph's sha256 and the gate's parameters, so a retry or a re-run reuses it. A cascade export takes the same
 * rule stage by stage (cascade-quantization.ts) and yields a manifest of the chosen graphs instead of one graph.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import type { ArtifactKind } from '../lib/cascade-manifest';
import { localDataset } from '../lib/dataset/cache';
import { fileDigest, sha256File } from '../lib/files';
import { quantizeCascade } from './cascade-quantization';
import { QuantizationResult, RelativeChange, type QuantizationInput } from './contracts';
import type { ActivityDeps } from './deps';
import { runPythonStep } from './python-step';
import { figures, PyFigures, PyProgress, type QuantizeHeartbeat } from './quantization-python';

// The gate's k: GraphFigures and the Python figures below are at 10.
const K = 10;
const LATENCY_RUNS = 1000;
const LATENCY_WARMUP = 100;
// int8 must cut p50 latency by at least 10% beyond noise: below that, the difference is the timer's, not the graph's.
const MIN_SPEEDUP = 0.1;
// Names the speed rule in the content key, so results decided by an earlier rule are not reused.
const SPEED_RULE = 'p50-ratio-paired-bootstrap-95';
// Names how a cascade's stages are chosen (models/cascade_quantize.py): in stage order, each measured end to end with
// the stages kept before it.
const CASCADE_RULE = 'stages-in-order-end-to-end-ndcg';

// What models/quantize.py prints (its module docstring); only the fields used here.
const PyResult = z.object({
  float: PyFigures,
  int8: PyFigures,
  relative_ndcg_change: RelativeChange,
  ships: z.enum(['int8', 'float']),
  reason: z.string(),
  quantized_ops: z.record(z.string(), z.number().int()),
  n_users: z.number().int(),
  p50_ratio: z.number(),
  p50_ratio_lo: z.number(),
  p50_ratio_hi: z.number(),
  min_speedup: z.number(),
});
/**
 * Content key of a quantization: the float artefact's bytes (a graph, or a cascade manifest, which pins its stage
 * graphs) and the gate's parameters.
 */
export function quantizationKey(floatSha256: string, tolerance: number, kind: ArtifactKind = 'single'): string {
  const canonical = JSON.stringify({
    floatSha256,
    tolerance,
    k: K,
    runs: LATENCY_RUNS,
    warmup: LATENCY_WARMUP,
    minSpeedup: MIN_SPEEDUP,
    speedRule: SPEED_RULE,
    // Only for a cascade, so a single graph's key (and its stored result) stays what it was.
    ...(kind === 'cascade' && { cascadeRule: CASCADE_RULE }),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** Where the outcome of a quantization goes: the int8 graph, or for a cascade the manifest of its chosen graphs. */
export function quantizedUri(exported: QuantizationInput['exported'], key: string): string {
  return exported.kind === 'cascade'
    ? `${exported.onnxUri.replace(/\.json$/, '')}-int8-${key}.json`
    : `${exported.onnxUri.replace(/\.onnx$/, '')}-int8-${key}.onnx`;
}

export function quantizationActivities(deps: ActivityDeps) {
  const { store } = deps;
  // Arrow functions, not methods: the worker and tests call activities detached from this object.
  return {
    quantize: async (input: QuantizationInput): Promise<QuantizationResult> => {
      const tolerance = input.tolerance ?? 0.01;
      if (!(tolerance >= 0 && tolerance < 1))
        throw ApplicationFailure.nonRetryable(`tolerance must be in [0, 1), got ${tolerance}`, 'ConfigError');
      if (!input.exported.onnxUri.startsWith(input.training.uri))
        throw ApplicationFailure.nonRetryable(
          `export ${input.exported.onnxUri} is not an output of training ${input.training.uri}`,
          'ConfigError',
        );
      const key = quantizationKey(input.exported.sha256, tolerance, input.exported.kind);
      const int8Uri = quantizedUri(input.exported, key);
      return runPythonStep<QuantizationResult, QuantizeHeartbeat>(deps, {
        name: 'quantization',
        summaryUri: `${int8Uri}.json`,
        summary: QuantizationResult,
        nonRetryable: ['QuantizationError', 'DataError', 'UsageError'],
        heartbeat: { stage: 'prepare' },
        work: async (ctx) => {
          const dataDir = await localDataset(input.dataset.manifestUri, store, deps.config.cacheDir);
          const gateArgs = [
            ...['--data-dir', dataDir, '--tolerance', String(tolerance), '--min-speedup', String(MIN_SPEEDUP)],
            ...['--k', String(K), '--runs', String(LATENCY_RUNS), '--warmup', String(LATENCY_WARMUP)],
          ];
          if (input.exported.kind === 'cascade')
            return quantizeCascade(deps, input, ctx, {
              manifestUri: int8Uri,
              tolerance,
              gateArgs,
              latencyRuns: LATENCY_RUNS,
            });
          const floatPath = path.join(ctx.dir, 'model.onnx');
          await store.downloadFile(input.exported.onnxUri, floatPath);
          const floatSha = await sha256File(floatPath);
          if (floatSha !== input.exported.sha256)
            throw ApplicationFailure.nonRetryable(
              `${input.exported.onnxUri} has sha256 ${floatSha}, but the export recorded ${input.exported.sha256}`,
              'ArtifactIntegrityError',
            );
          const out = path.join(ctx.dir, 'model.int8.onnx');
          const result = await ctx.python({
            module: 'models.quantize',
            args: ['--onnx', floatPath, '--out', out, ...gateArgs],
            result: PyResult,
            events: { progress: PyProgress },
            // Each stage replaces the last one's details (the event's fields without its name).
            onEvent: ({ event: _progress, ...details }) => ctx.heartbeat(() => details),
          });
          ctx.heartbeat(() => ({ stage: 'upload' }));
          const int8 = await fileDigest(out);
          await store.putFile(int8Uri, out);
          return {
            kind: 'single',
            int8Uri,
            int8Sha256: int8.sha256,
            int8Bytes: int8.bytes,
            floatUri: input.exported.onnxUri,
            floatSha256: input.exported.sha256,
            float: figures(result.float),
            int8: figures(result.int8),
            relativeNdcgChange: result.relative_ndcg_change,
            tolerance,
            ships: result.ships,
            reason: result.reason,
            p50Ratio: result.p50_ratio,
            p50RatioLo: result.p50_ratio_lo,
            p50RatioHi: result.p50_ratio_hi,
            minSpeedup: result.min_speedup,
            quantizedOps: result.quantized_ops,
            nUsers: result.n_users,
            latencyRuns: LATENCY_RUNS,
            reused: false,
          };
        },
      });
    },
  };
}
