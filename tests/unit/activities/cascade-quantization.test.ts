/**
 * The quantize activity on a cascade export: the stage graphs the export's manifest pins are checked and handed to
 * models.cascade_quantize, every int8 stage graph is stored beside them, and the result points at a new manifest
 * naming the chosen graph of each stage. A fake interpreter stands in for Python (it decides rank int8, the rest
 * fp32, unless told otherwise) and an in-memory store for S3: what is under test is the activity's side.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { QuantizationInput, QuantizationResult } from '../../../activities/contracts';
import { defaultDeps } from '../../../activities/deps';
import { quantizationActivities, quantizationKey, quantizedUri } from '../../../activities/quantization';
import { parseCascadeManifest, type CascadeManifest } from '../../../lib/cascade-manifest';
import { loadConfig } from '../../../lib/config';
import type { ObjectStore } from '../../../lib/object-store';

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const TRAINING = 's3://b/training/m/k/';
const DATASET = 's3://b/datasets/ml-test/v1/manifest.json';

let tmp: string;
let python: string;
let argsFile: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'recsys-cascade-q-'));
  python = path.join(tmp, 'python');
  argsFile = path.join(tmp, 'args.json');
  // `-m models.cascade_quantize --recall R --rank K --rerank RR --out-dir O ...`: writes O/<stage>.int8.onnx (the
  // float graph's bytes, prefixed) and the result line; which stages ship int8 comes from FAKE_INT8.
  fs.writeFileSync(
    python,
    `#!/usr/bin/env node
const fs = require('fs'), path = require('path');
const a = process.argv.slice(2);
fs.writeFileSync(${JSON.stringify(argsFile)}, JSON.stringify(a));
const arg = (n) => a[a.indexOf(n) + 1];
const int8 = (process.env.FAKE_INT8 ?? 'rank').split(',').filter(Boolean);
fs.mkdirSync(arg('--out-dir'), { recursive: true });
const kept = [];
const stages = ['recall', 'rank', 'rerank'].map((name, i) => {
  const file = path.join(arg('--out-dir'), name + '.int8.onnx');
  fs.writeFileSync(file, 'int8 ' + fs.readFileSync(arg('--' + name), 'utf8'));
  const ships = int8.includes(name) ? 'int8' : 'float';
  const trial = [...kept, name];
  if (ships === 'int8') kept.push(name);
  return { name, ships, reason: name + ' ' + ships, int8_path: file, top_k: [60, 20, 10][i],
    quantized_ops: { MatMulInteger: i + 1 }, float: { p50_ms: 1, p99_ms: 2 }, int8: { p50_ms: 0.5, p99_ms: 1 },
    p50_ratio: 0.5, p50_ratio_lo: 0.45, p50_ratio_hi: 0.55, int8_stages: trial,
    cascade: { 'ndcg@10': 0.3 }, relative_ndcg_change: -0.001 };
});
const figures = (ndcg, p50) => ({ 'ndcg@10': ndcg, 'recall@10': 0.4, hr: 1, p50_ms: p50, p99_ms: 3 });
console.log(JSON.stringify({ event: 'progress', stage: 'time', graph: 'rank' }));
console.log(JSON.stringify({ event: 'result', kind: 'cascade', float: figures(0.3, 2), int8: figures(0.2997, 1.5),
  relative_ndcg_change: -0.001, ships: kept.length ? 'int8' : 'float', reason: 'r', stages, n_users: 9,
  min_speedup: 0.1 }));
`,
    { mode: 0o755 },
  );
  // The dataset is already in the local cache: the activity only needs its directory.
  fs.mkdirSync(path.join(tmp, 'cache', 'datasets', 'ml-test', 'v1'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'cache', 'datasets', 'ml-test', 'v1', '.complete'), '');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => delete process.env.FAKE_INT8);

/** An object store in memory. */
function memoryStore(objects: Map<string, Buffer>): ObjectStore {
  const store = {
    getJson: (uri: string) => Promise.resolve(objects.has(uri) ? JSON.parse(String(objects.get(uri))) : undefined),
    putJson: (uri: string, value: unknown) =>
      Promise.resolve(void objects.set(uri, Buffer.from(JSON.stringify(value)))),
    putFile: (uri: string, file: string) => Promise.resolve(void objects.set(uri, fs.readFileSync(file))),
    downloadFile: (uri: string, file: string) => {
      const body = objects.get(uri);
      if (!body) return Promise.reject(new Error(`no ${uri}`));
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, body);
      return Promise.resolve();
    },
  };
  return store as unknown as ObjectStore;
}

/** A cascade export in the store: three stage graphs and the manifest that pins them. */
function exportedCascade(objects: Map<string, Buffer>) {
  const stages = (['recall', 'rank', 'rerank'] as const).map((name, i) => {
    const body = `fp32 ${name}`;
    const uri = `${TRAINING}stage-${name}-${sha(body).slice(0, 16)}.onnx`;
    objects.set(uri, Buffer.from(body));
    return { name, uri, sha256: sha(body), bytes: body.length, topK: [60, 20, 10][i]! };
  });
  const manifest: CascadeManifest = { kind: 'cascade', historyLen: 8, nItems: 50, stages };
  const text = JSON.stringify(manifest, null, 2) + '\n';
  const onnxUri = `${TRAINING}cascade-top10.json`;
  objects.set(onnxUri, Buffer.from(text));
  return {
    onnxUri,
    sha256: sha(text),
    bytes: text.length,
    maxAbsDiff: 1e-7,
    tolerance: 1e-4,
    topK: 10,
    historyLen: 8,
    nItems: 50,
    opset: 20,
    kind: 'cascade' as const,
    stages,
    reused: false,
  };
}

function quantize(objects: Map<string, Buffer>) {
  const config = { ...loadConfig(), python, cacheDir: path.join(tmp, 'cache') };
  return quantizationActivities(defaultDeps({ config, store: memoryStore(objects) })).quantize;
}

const runQuantize = (objects: Map<string, Buffer>, exported: ReturnType<typeof exportedCascade>) =>
  new MockActivityEnvironment().run<[QuantizationInput], QuantizationResult, ReturnType<typeof quantize>>(
    quantize(objects),
    inputOf(exported),
  );

const inputOf = (exported: ReturnType<typeof exportedCascade>): QuantizationInput => ({
  dataset: { manifestUri: DATASET } as never,
  training: { uri: TRAINING } as never,
  exported,
  tolerance: 0.02,
});

test('a stage kept int8: the chosen manifest names its int8 graph and the other stages as exported', async () => {
  const objects = new Map<string, Buffer>();
  const exported = exportedCascade(objects);
  const result = await runQuantize(objects, exported);

  const manifestUri = quantizedUri(exported, quantizationKey(exported.sha256, 0.02, 'cascade'));
  expect(manifestUri).toMatch(/^s3:\/\/b\/training\/m\/k\/cascade-top10-int8-[0-9a-f]{16}\.json$/);
  expect(result).toMatchObject({
    kind: 'cascade',
    ships: 'int8',
    int8Uri: manifestUri,
    floatUri: exported.onnxUri,
    floatSha256: exported.sha256,
    tolerance: 0.02,
    nUsers: 9,
    quantizedOps: { MatMulInteger: 6 },
    float: { ndcgAt10: 0.3, p50Ms: 2 },
    int8: { ndcgAt10: 0.2997, p50Ms: 1.5 },
    reused: false,
  });
  expect(result.p50Ratio).toBeUndefined(); // a cascade's speed figures are per stage
  const stored = objects.get(manifestUri)!;
  expect(result.int8Sha256).toBe(sha(stored));
  expect(result.int8Bytes).toBe(stored.length);
  const served = parseCascadeManifest(String(stored), manifestUri);
  expect(served).toMatchObject({ kind: 'cascade', historyLen: 8, nItems: 50 });
  const [recall, rank, rerank] = served.stages;
  expect(recall).toEqual(exported.stages[0]);
  expect(rerank).toEqual(exported.stages[2]);
  const int8Rank = 'int8 fp32 rank';
  expect(rank).toEqual({
    name: 'rank',
    uri: `${TRAINING}stage-rank-int8-${sha(int8Rank).slice(0, 16)}.onnx`,
    sha256: sha(int8Rank),
    bytes: int8Rank.length,
    topK: 20,
  });
  // Every int8 graph is stored (the ones not chosen too), each decision in the result.
  for (const s of result.stages!) {
    expect(String(objects.get(s.int8Uri))).toBe(`int8 fp32 ${s.name}`);
    expect(s.int8Sha256).toBe(sha(`int8 fp32 ${s.name}`));
  }
  expect(result.stages!.map((s) => [s.name, s.ships, s.int8Stages])).toEqual([
    ['recall', 'float', ['recall']],
    ['rank', 'int8', ['rank']],
    ['rerank', 'float', ['rank', 'rerank']],
  ]);
  expect(result.stages![1]).toMatchObject({
    floatUri: exported.stages[1]!.uri,
    p50Ratio: 0.5,
    p50RatioHi: 0.55,
    floatP50Ms: 1,
    int8P50Ms: 0.5,
    ndcgAt10: 0.3,
    relativeNdcgChange: -0.001,
  });
  // The job got the stage graphs as stored and the gate's parameters.
  const args = JSON.parse(fs.readFileSync(argsFile, 'utf8')) as string[];
  expect(args.slice(0, 2)).toEqual(['-m', 'models.cascade_quantize']);
  const at = (flag: string) => args[args.indexOf(flag) + 1];
  expect(at('--tolerance')).toBe('0.02');
  expect(at('--min-speedup')).toBe('0.1');
  expect(at('--runs')).toBe('1000');

  // Done once: the same input again is the stored result.
  expect(await runQuantize(objects, exported)).toMatchObject({
    int8Uri: manifestUri,
    reused: true,
  });
}, 30_000);

test('no stage kept int8: ships float, and the manifest of the chosen graphs is the export’s own stages', async () => {
  process.env.FAKE_INT8 = '';
  const objects = new Map<string, Buffer>();
  const exported = exportedCascade(objects);
  const result = await runQuantize(objects, exported);
  expect(result.ships).toBe('float');
  expect(parseCascadeManifest(String(objects.get(result.int8Uri)), result.int8Uri).stages).toEqual(exported.stages);
}, 30_000);

test('a stage graph that is not the one the manifest pins is refused before anything runs', async () => {
  const objects = new Map<string, Buffer>();
  const exported = exportedCascade(objects);
  objects.set(exported.stages[1]!.uri, Buffer.from('tampered'));
  fs.rmSync(argsFile, { force: true });
  const err: unknown = await runQuantize(objects, exported).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect(err).toMatchObject({ type: 'ArtifactIntegrityError', nonRetryable: true });
  expect((err as Error).message).toContain(exported.stages[1]!.uri);
  expect(fs.existsSync(argsFile)).toBe(false);
}, 30_000);

test('a cascade and a single graph with the same bytes get different quantization keys', () => {
  expect(quantizationKey('ab', 0.01, 'cascade')).not.toBe(quantizationKey('ab', 0.01));
  expect(quantizationKey('ab', 0.01, 'single')).toBe(quantizationKey('ab', 0.01));
});
