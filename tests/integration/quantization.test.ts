/**
 * The quantize activity for real against the object store: a tiny dataset built by the real `etl` activity, a tiny
 * model trained and exported by the real `train` and `exportOnnx` activities, then int8 quantization, evaluation,
 * timing and the gate. The int8 graph is read back from the store and checked against the recorded sha256; a second
 * call reuses the summary; another tolerance is another key; a float graph that does not match its recorded sha256
 * is refused; a cancelled run stores nothing.
 */
import { createHash } from 'node:crypto';
import { CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import type {
  EtlInput,
  ExportResult,
  QuantizationInput,
  QuantizationResult,
  TrainResult,
} from '../../activities/contracts';
import { defaultDeps } from '../../activities/deps';
import { etlActivities } from '../../activities/etl';
import type { DatasetVersion } from '../../lib/dataset/ref';
import { exportActivities } from '../../activities/export';
import { quantizationActivities, quantizationKey } from '../../activities/quantization';
import { trainingActivities } from '../../activities/training';
import { objectStore } from '../../lib/object-store';
import { smallDatasetSource } from './training-fixture';
import { uniqueName } from './stack';

const deps = defaultDeps();
// etl is a method of its factory's object: call it through the object.
const etl = (input: EtlInput) => etlActivities(deps).etl(input);
const { train } = trainingActivities(deps);
const { exportOnnx } = exportActivities(deps);
const { quantize } = quantizationActivities(deps);

const store = objectStore();
let dataset: DatasetVersion;
let training: TrainResult;
let exported: ExportResult;
let first: QuantizationResult;

const env = () => new MockActivityEnvironment();

beforeAll(async () => {
  const name = uniqueName('it-q');
  const source = await smallDatasetSource(name);
  const etlInput: EtlInput = {
    name,
    sources: [source],
    config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] },
  };
  dataset = await env().run(etl, etlInput);
  training = await env().run(train, {
    model: uniqueName('it-quantize'),
    dataset,
    config: { embedding_dim: 16, hidden_dim: 32, history_len: 20, batch_size: 256, epochs: 2, lr: 0.01 },
    nprocPerNode: 1,
  });
  exported = await env().run(exportOnnx, { training, topK: 20 });
  first = await env().run(quantize, { dataset, training, exported });
});

test('stores the int8 graph next to the float one, with its figures and the decision', async () => {
  expect(first.reused).toBe(false);
  expect(first.int8Uri.startsWith(exported.onnxUri.replace(/\.onnx$/, ''))).toBe(true);
  expect(first.int8Uri).not.toBe(exported.onnxUri);
  const bytes = await store.getBytes(first.int8Uri);
  expect(bytes).toBeDefined();
  expect(bytes!.length).toBe(first.int8Bytes);
  expect(createHash('sha256').update(bytes!).digest('hex')).toBe(first.int8Sha256);
  expect(first.floatSha256).toBe(exported.sha256);
  expect(first.int8Sha256).not.toBe(exported.sha256);

  for (const g of [first.float, first.int8]) {
    expect(g.ndcgAt10).toBeGreaterThan(0);
    expect(g.ndcgAt10).toBeLessThanOrEqual(1);
    expect(g.recallAt10).toBeGreaterThan(0);
    expect(g.p50Ms).toBeGreaterThan(0);
    expect(g.p99Ms).toBeGreaterThanOrEqual(g.p50Ms);
  }
  expect(first.relativeNdcgChange).toBeCloseTo((first.int8.ndcgAt10 - first.float.ndcgAt10) / first.float.ndcgAt10);
  expect(first.tolerance).toBe(0.01);
  expect(first.quantizedOps.MatMulInteger).toBeGreaterThanOrEqual(1);
  // The decision follows the gate from the figures it reports.
  // Faster means beyond the timer's noise: the p50 ratio and its interval's upper end at most 1 - minSpeedup.
  const bound = 1 - first.minSpeedup!;
  expect(first.p50RatioLo!).toBeLessThanOrEqual(first.p50Ratio!);
  expect(first.p50RatioHi!).toBeGreaterThanOrEqual(first.p50Ratio!);
  const faster = first.p50Ratio! <= bound && first.p50RatioHi! <= bound;
  const passes = first.relativeNdcgChange >= -first.tolerance && faster;
  expect(first.ships).toBe(passes ? 'int8' : 'float');
  expect(first.reason).toMatch(passes ? /within tolerance 1%/ : /exceeds tolerance|not faster/);
});

test('a second call reuses the stored result; another tolerance is another artefact', async () => {
  const again: QuantizationResult = await env().run(quantize, { dataset, training, exported });
  expect(again).toEqual({ ...first, reused: true });

  const strictInput: QuantizationInput = { dataset, training, exported, tolerance: 0 };
  const strict: QuantizationResult = await env().run(quantize, strictInput);
  expect(strict.reused).toBe(false);
  expect(strict.int8Uri).not.toBe(first.int8Uri);
  expect(strict.tolerance).toBe(0);
  // Same float graph, same quantizer: the int8 bytes and their quality are the same; only the gate differs.
  expect(strict.int8Sha256).toBe(first.int8Sha256);
  expect(strict.int8.ndcgAt10).toBe(first.int8.ndcgAt10);
});

test('refuses a float graph whose bytes do not match the export record', async () => {
  const forged = { ...exported, sha256: '0'.repeat(64) };
  await expect(env().run(quantize, { dataset, training, exported: forged })).rejects.toMatchObject({
    type: 'ArtifactIntegrityError',
    nonRetryable: true,
  });
});

test('cancellation stops the Python step and stores nothing', async () => {
  const input: QuantizationInput = { dataset, training, exported, tolerance: 0.02 };
  const cancellable = env();
  const stages: unknown[] = [];
  // Cancel once models.quantize reports it is quantizing: the Python process is running then.
  cancellable.on('heartbeat', (detail: { stage?: unknown } | undefined) => {
    stages.push(detail?.stage);
    if (detail?.stage === 'quantize') cancellable.cancel();
  });
  await expect(cancellable.run(quantize, input)).rejects.toBeInstanceOf(CancelledFailure);
  expect(stages).toContain('quantize');
  expect(stages).not.toContain('upload');
  const int8Uri = `${exported.onnxUri.replace(/\.onnx$/, '')}-int8-${quantizationKey(exported.sha256, 0.02)}.onnx`;
  expect(await store.exists(`${int8Uri}.json`)).toBe(false);
  expect(await store.exists(int8Uri)).toBe(false);
});
