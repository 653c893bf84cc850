/**
 * Quantization of a cascade export (models/cascade_quantize.py), the quantize activity's path for kind `cascade`:
 * every stage graph the export's manifest names is quantized to int8 and timed against its fp32 graph on the inputs
 * serving gives that stage; a stage keeps int8 only when it passes the single graph's speed rule and the cascade with
 * it int8 keeps its end-to-end NDCG@10 within the tolerance. The outcome is a new cascade manifest naming the chosen
 * graph of each stage (each int8 graph stored beside the export's stage graphs, under its checksum): what the version
 * serves when any stage ships int8.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import { CASCADE_STAGES, CascadeManifest, parseCascadeManifest, type CascadeStage } from '../lib/cascade-manifest';
import { fileDigest, sha256File } from '../lib/files';
import { RelativeChange, type QuantizationInput, type QuantizationResult, type StageQuantization } from './contracts';
import type { ActivityDeps } from './deps';
import type { StepContext } from './python-step';
import { figures, PyFigures, PyProgress, type QuantizeHeartbeat } from './quantization-python';

// What models/cascade_quantize.py prints (its module docstring); only the fields used here.
const PyLatency = z.object({ p50_ms: z.number(), p99_ms: z.number() });
const PyStage = z.object({
  name: z.enum(CASCADE_STAGES),
  ships: z.enum(['int8', 'float']),
  reason: z.string(),
  int8_path: z.string(),
  top_k: z.number().int(),
  quantized_ops: z.record(z.string(), z.number().int()),
  float: PyLatency,
  int8: PyLatency,
  p50_ratio: z.number(),
  p50_ratio_lo: z.number(),
  p50_ratio_hi: z.number(),
  int8_stages: z.array(z.enum(CASCADE_STAGES)),
  cascade: z.object({ 'ndcg@10': z.number() }),
  relative_ndcg_change: RelativeChange,
});
const PyCascadeResult = z.object({
  kind: z.literal('cascade'),
  float: PyFigures,
  int8: PyFigures,
  relative_ndcg_change: RelativeChange,
  ships: z.enum(['int8', 'float']),
  reason: z.string(),
  stages: z.array(PyStage).length(CASCADE_STAGES.length),
  n_users: z.number().int(),
  min_speedup: z.number(),
});

export interface CascadeQuantizationOptions {
  /** Where the manifest of the chosen graphs goes (the result's int8Uri). */
  manifestUri: string;
  tolerance: number;
  /** The gate's arguments shared with the single graph's job: --data-dir, --tolerance, --min-speedup, --k, --runs... */
  gateArgs: string[];
  latencyRuns: number;
}

const integrityError = (message: string) => ApplicationFailure.nonRetryable(message, 'ArtifactIntegrityError');

/** The export's manifest and its stage graphs, downloaded and checked against the checksums that pin them. */
async function exportedCascade(
  deps: ActivityDeps,
  input: QuantizationInput,
  dir: string,
): Promise<{ manifest: CascadeManifest; files: string[] }> {
  const { onnxUri, sha256 } = input.exported;
  const manifestFile = path.join(dir, 'cascade.json');
  await deps.store.downloadFile(onnxUri, manifestFile);
  const got = await sha256File(manifestFile);
  if (got !== sha256) throw integrityError(`${onnxUri} has sha256 ${got}, but the export recorded ${sha256}`);
  let manifest: CascadeManifest;
  try {
    manifest = parseCascadeManifest(await fs.readFile(manifestFile, 'utf8'), onnxUri);
  } catch (err) {
    throw integrityError((err as Error).message);
  }
  const files: string[] = [];
  for (const stage of manifest.stages) {
    const file = path.join(dir, `${stage.name}.onnx`);
    await deps.store.downloadFile(stage.uri, file);
    const stageSha = await sha256File(file);
    if (stageSha !== stage.sha256)
      throw integrityError(
        `${stage.name} stage ${stage.uri} has sha256 ${stageSha}, but ${onnxUri} says ${stage.sha256}`,
      );
    files.push(file);
  }
  return { manifest, files };
}

export async function quantizeCascade(
  deps: ActivityDeps,
  input: QuantizationInput,
  ctx: StepContext<QuantizeHeartbeat>,
  opts: CascadeQuantizationOptions,
): Promise<QuantizationResult> {
  const { store } = deps;
  const { manifest, files } = await exportedCascade(deps, input, ctx.dir);
  const result = await ctx.python({
    module: 'models.cascade_quantize',
    args: [
      ...CASCADE_STAGES.flatMap((name, i) => [`--${name}`, files[i]!]),
      ...['--out-dir', path.join(ctx.dir, 'int8'), ...opts.gateArgs],
    ],
    result: PyCascadeResult,
    events: { progress: PyProgress },
    onEvent: ({ event: _progress, ...details }) => ctx.heartbeat(() => details),
  });

  ctx.heartbeat(() => ({ stage: 'upload' }));
  const stages: StageQuantization[] = [];
  const chosen: CascadeStage[] = [];
  const quantizedOps: Record<string, number> = {};
  for (const [i, s] of result.stages.entries()) {
    const exported = manifest.stages[i]!;
    if (s.name !== exported.name || s.top_k !== exported.topK)
      throw ApplicationFailure.nonRetryable(
        `models.cascade_quantize stage ${i} is ${s.name} (top ${s.top_k}), the manifest's is ${exported.name} ` +
          `(top ${exported.topK})`,
        'PythonOutputError',
      );
    const int8 = await fileDigest(s.int8_path);
    const int8Uri = exported.uri.replace(/[^/]*$/, `stage-${s.name}-int8-${int8.sha256.slice(0, 16)}.onnx`);
    await store.putFile(int8Uri, s.int8_path);
    chosen.push(s.ships === 'int8' ? { ...exported, uri: int8Uri, sha256: int8.sha256, bytes: int8.bytes } : exported);
    for (const [op, n] of Object.entries(s.quantized_ops)) quantizedOps[op] = (quantizedOps[op] ?? 0) + n;
    stages.push({
      name: s.name,
      ships: s.ships,
      reason: s.reason,
      floatUri: exported.uri,
      floatSha256: exported.sha256,
      int8Uri,
      int8Sha256: int8.sha256,
      int8Bytes: int8.bytes,
      floatP50Ms: s.float.p50_ms,
      floatP99Ms: s.float.p99_ms,
      int8P50Ms: s.int8.p50_ms,
      int8P99Ms: s.int8.p99_ms,
      p50Ratio: s.p50_ratio,
      p50RatioLo: s.p50_ratio_lo,
      p50RatioHi: s.p50_ratio_hi,
      int8Stages: s.int8_stages,
      ndcgAt10: s.cascade['ndcg@10'],
      relativeNdcgChange: s.relative_ndcg_change,
      quantizedOps: s.quantized_ops,
    });
  }
  // The manifest of the chosen graphs, after the graphs it names: it never names a graph that is not stored.
  const served = CascadeManifest.parse({ ...manifest, stages: chosen });
  const servedFile = path.join(ctx.dir, 'cascade.chosen.json');
  await fs.writeFile(servedFile, JSON.stringify(served, null, 2) + '\n');
  const digest = await fileDigest(servedFile);
  await store.putFile(opts.manifestUri, servedFile);
  return {
    kind: 'cascade',
    int8Uri: opts.manifestUri,
    int8Sha256: digest.sha256,
    int8Bytes: digest.bytes,
    floatUri: input.exported.onnxUri,
    floatSha256: input.exported.sha256,
    float: figures(result.float),
    int8: figures(result.int8),
    relativeNdcgChange: result.relative_ndcg_change,
    tolerance: opts.tolerance,
    ships: result.ships,
    reason: result.reason,
    minSpeedup: result.min_speedup,
    quantizedOps,
    nUsers: result.n_users,
    latencyRuns: opts.latencyRuns,
    stages,
    reused: false,
  };
}
