/**
 * Quantization: float vs int8 (onnxruntime dynamic quantization, models/quantize.py) of the exported serving graph,
 * for both model families on the ML-1M-sized synthetic set and MovieLens-100K: p50/p99 latency of single-user
 * requests (batch 1, 1 thread, same inputs, alternating), full-ranking NDCG@10 of both graphs on the test split and
 * its relative change, file sizes and the gate's decision at the default 1% tolerance; per-tensor and per-channel
 * weight scales side by side.
 *   npx tsx bench/quantization.ts <path to ml-100k.inter> [runs=2000]
 *
 * Models come from bench/quality.ts's cache (trained there with the same configs, or here if absent).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { runPython } from '../activities/python-process';
import { machine } from './common';
import { FAMILIES, benchDatasets, trainCached } from './quality';

interface Figures {
  'ndcg@10': number;
  'recall@10': number;
  p50_ms: number;
  p99_ms: number;
}

async function exported(modelPath: string): Promise<string> {
  const onnx = path.join(path.dirname(modelPath), 'model-top100.onnx');
  try {
    await fs.access(onnx);
  } catch {
    await runPython({ module: 'models.export', args: ['--model', modelPath, '--out', onnx, '--top-k', '100'] });
  }
  return onnx;
}

const ms = (x: number) => x.toFixed(3);
const kb = (bytes: number) => `${Math.round(bytes / 1024)} KB`;

async function main(): Promise<void> {
  const inter = process.argv[2];
  if (!inter) throw new Error('usage: bench/quantization.ts <ml-100k.inter> [runs]');
  const runs = Number(process.argv[3] ?? 2000);
  const datasets = await benchDatasets(inter);
  console.log(`Quantization benchmark on ${machine()}`);
  console.log(
    `  served graph (history [1, L] -> top-100), onnxruntime ${runs} timed single-user requests per graph after 200 ` +
      'warm-up, 1 thread; NDCG@10 full ranking on the test split; gate: NDCG@10 within 1% and faster',
  );
  for (const ds of datasets) {
    console.log(`\n${ds.label} (${ds.ref.counts.items} items)`);
    console.log(
      `  ${'family'.padEnd(11)} ${'weights'.padEnd(12)} ${'fp32 p50/p99 ms'.padEnd(16)} ${'int8 p50/p99 ms'.padEnd(16)} ` +
        `${'fp32 NDCG'.padEnd(10)} ${'int8 NDCG'.padEnd(10)} ${'change'.padEnd(8)} ${'size fp32 -> int8'.padEnd(20)} ships`,
    );
    for (const family of FAMILIES.filter((f) => f.kind !== 'cascade')) {
      const trained = await trainCached(ds, family.config[ds.label]!);
      const onnx = await exported(trained.modelPath);
      for (const perChannel of [false, true]) {
        const out = onnx.replace(/\.onnx$/, perChannel ? '-int8-pc.onnx' : '-int8.onnx');
        const result = await runPython({
          module: 'models.quantize',
          args: [
            ...['--onnx', onnx, '--out', out, '--data-dir', ds.dir, '--tolerance', '0.01'],
            ...['--runs', String(runs), '--warmup', '200'],
            ...(perChannel ? ['--per-channel'] : []),
          ],
        });
        const f = result.float as Figures;
        const q = result.int8 as Figures;
        const change = (result.relative_ndcg_change as number) * 100;
        console.log(
          `  ${family.label.padEnd(11)} ${(perChannel ? 'per-channel' : 'per-tensor').padEnd(12)} ` +
            `${`${ms(f.p50_ms)} / ${ms(f.p99_ms)}`.padEnd(16)} ${`${ms(q.p50_ms)} / ${ms(q.p99_ms)}`.padEnd(16)} ` +
            `${f['ndcg@10'].toFixed(4).padEnd(10)} ${q['ndcg@10'].toFixed(4).padEnd(10)} ` +
            `${`${change >= 0 ? '+' : ''}${change.toFixed(2)}%`.padEnd(8)} ` +
            `${`${kb(result.float_bytes as number)} -> ${kb(result.int8_bytes as number)}`.padEnd(20)} ` +
            `${String(result.ships)}: ${String(result.reason)}`,
        );
        const ops = Object.entries(result.quantized_ops as Record<string, number>)
          .map(([op, n]) => `${op} x${n}`)
          .join(', ');
        if (!perChannel) console.log(`  ${''.padEnd(11)} quantized: ${ops}`);
      }
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
