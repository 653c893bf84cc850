/**
 * Quantization activity: int8 dynamic quantization of the exported serving graph (models/quantize.py), gated on
 * quality and speed. Both graphs are evaluated on the same test split (full ranking) and timed on the same
 * single-user requests; int8 ships only if its NDCG@10 stays within `tolerance` (relative) of the float graph's and it
 * is faster. The int8 file is stored next to the float ONNX, keyed by the float graph's sha256 and the tolerance, so
 * a retry or a re-run reuses it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { sha256File, withTempDir } from '../lib/files';
import { objectStore } from '../lib/object-store';
import type { DatasetVersion } from '../lib/dataset/ref';
import { localDataset } from '../lib/dataset/cache';
import type { ExportResult } from './export';
import { PythonStepError, runPython, type PythonEvent } from './python-process';
import type { TrainResult } from './training';

/** Quality and latency of one graph (NDCG/Recall at k = 10, p50/p99 ms per single-user request, 1 thread). */
export interface GraphFigures {
  ndcgAt10: number;
  recallAt10: number;
  p50Ms: number;
  p99Ms: number;
}

export interface QuantizationResult {
  int8Uri: string;
  int8Sha256: string;
  int8Bytes: number;
  /** The float graph the int8 one was made from (ExportResult.onnxUri / sha256). */
  floatUri: string;
  floatSha256: string;
  float: GraphFigures;
  int8: GraphFigures;
  /** (int8 NDCG@10 - float NDCG@10) / float NDCG@10. */
  relativeNdcgChange: number;
  tolerance: number;
  ships: 'int8' | 'float';
  /** Why, e.g. `int8 NDCG@10 -2.30% exceeds tolerance 1%` or `int8 not faster: p50 0.031 ms vs 0.029 ms`. */
  reason: string;
  /** Ops the quantizer added, e.g. { MatMulInteger: 3, DynamicQuantizeLinear: 3 }. */
  quantizedOps: Record<string, number>;
  nUsers: number;
  latencyRuns: number;
  reused: boolean;
}

export interface QuantizationInput {
  dataset: DatasetVersion;
  training: TrainResult;
  exported: ExportResult;
  /** Max relative NDCG@10 loss of the int8 graph; 0.01 (1%) by default. */
  tolerance?: number;
}

const K = 10;
const LATENCY_RUNS = 1000;
const LATENCY_WARMUP = 100;

/** Content key of a quantization: the float graph's bytes and the gate's parameters. */
export function quantizationKey(floatSha256: string, tolerance: number): string {
  const canonical = JSON.stringify({ floatSha256, tolerance, k: K, runs: LATENCY_RUNS, warmup: LATENCY_WARMUP });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

function figures(raw: unknown, where: string): GraphFigures {
  const m = raw as Record<string, unknown> | undefined;
  const pick = (key: string): number => {
    const v = m?.[key];
    if (typeof v !== 'number') throw new Error(`models.quantize result: ${where}.${key} is not a number`);
    return v;
  };
  return {
    ndcgAt10: pick(`ndcg@${K}`),
    recallAt10: pick(`recall@${K}`),
    p50Ms: pick('p50_ms'),
    p99Ms: pick('p99_ms'),
  };
}

export async function quantize(input: QuantizationInput): Promise<QuantizationResult> {
  const ctx = Context.current();
  const store = objectStore();
  const tolerance = input.tolerance ?? 0.01;
  if (!(tolerance >= 0 && tolerance < 1))
    throw ApplicationFailure.nonRetryable(`tolerance must be in [0, 1), got ${tolerance}`, 'ConfigError');
  if (!input.exported.onnxUri.startsWith(input.training.uri))
    throw ApplicationFailure.nonRetryable(
      `export ${input.exported.onnxUri} is not an output of training ${input.training.uri}`,
      'ConfigError',
    );
  const key = quantizationKey(input.exported.sha256, tolerance);
  const int8Uri = `${input.exported.onnxUri.replace(/\.onnx$/, '')}-int8-${key}.onnx`;
  const summaryUri = `${int8Uri}.json`;
  const existing = await store.getJson(summaryUri);
  if (existing !== undefined) return { ...(existing as QuantizationResult), reused: true };

  let beat: Record<string, unknown> = { stage: 'prepare' };
  const ticker = setInterval(() => ctx.heartbeat(beat), 5000);
  try {
    const dataDir = await localDataset(input.dataset.manifestUri);
    return await withTempDir('quantize', async (work) => {
      const floatPath = path.join(work, 'model.onnx');
      await store.downloadFile(input.exported.onnxUri, floatPath);
      const floatSha = await sha256File(floatPath);
      if (floatSha !== input.exported.sha256)
        throw ApplicationFailure.nonRetryable(
          `${input.exported.onnxUri} has sha256 ${floatSha}, but the export recorded ${input.exported.sha256}`,
          'ArtifactIntegrityError',
        );
      const out = path.join(work, 'model.int8.onnx');
      const onEvent = (ev: PythonEvent) => {
        if (ev.event !== 'progress') return;
        beat = Object.fromEntries(Object.entries(ev).filter(([k]) => k !== 'event'));
        ctx.heartbeat(beat);
      };
      const result = await runPython({
        module: 'models.quantize',
        args: [
          ...['--onnx', floatPath, '--out', out, '--data-dir', dataDir],
          ...['--tolerance', String(tolerance), '--k', String(K)],
          ...['--runs', String(LATENCY_RUNS), '--warmup', String(LATENCY_WARMUP)],
        ],
        onEvent,
        signal: ctx.cancellationSignal,
      });
      beat = { stage: 'upload' };
      ctx.heartbeat(beat);
      const int8Sha256 = await sha256File(out);
      const { size } = await fs.stat(out);
      await store.putFile(int8Uri, out);
      const ships = result.ships;
      if (ships !== 'int8' && ships !== 'float') throw new Error(`models.quantize result: ships is ${String(ships)}`);
      const summary: QuantizationResult = {
        int8Uri,
        int8Sha256,
        int8Bytes: size,
        floatUri: input.exported.onnxUri,
        floatSha256: input.exported.sha256,
        float: figures(result.float, 'float'),
        int8: figures(result.int8, 'int8'),
        relativeNdcgChange: result.relative_ndcg_change as number,
        tolerance,
        ships,
        reason: result.reason as string,
        quantizedOps: result.quantized_ops as Record<string, number>,
        nUsers: result.n_users as number,
        latencyRuns: LATENCY_RUNS,
        reused: false,
      };
      // The summary last: its presence means the int8 graph is stored.
      await store.putJson(summaryUri, summary);
      return summary;
    });
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw new CancelledFailure('quantization cancelled');
    if (err instanceof PythonStepError && ['QuantizationError', 'DataError', 'UsageError'].includes(err.errorType))
      throw ApplicationFailure.nonRetryable(err.message, err.errorType);
    throw err;
  } finally {
    clearInterval(ticker);
  }
}
