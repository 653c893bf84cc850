/**
 * The evaluate activity for real: tiny models trained by the real etl and train activities on synthetic logs in the
 * object store, evaluated by models/evaluate.py. A model against itself differs by exactly zero on every metric and
 * slice; against a champion trained on another dataset version (other item indices, some items missing) the
 * figures are paired over the same users, and every result is keyed by the champion it was compared with.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import {
  EvaluationResult,
  type EtlInput,
  type EvaluationBaseline,
  type Interval,
  type TrainResult,
} from '../../activities/contracts';
import { defaultDeps } from '../../activities/deps';
import { etlActivities } from '../../activities/etl';
import type { DatasetVersion } from '../../lib/dataset/ref';
import { evaluationActivities, EvaluationReportError, parseEvaluationReport } from '../../activities/evaluation';
import { trainingActivities } from '../../activities/training';
import { config } from '../../lib/config';
import { objectStore } from '../../lib/object-store';
import { uniqueName } from './stack';
import { smallDatasetSource } from './training-fixture';

const store = objectStore();
const deps = defaultDeps();
// etl is a method of its factory's object: call it through the object.
const etl = (input: EtlInput) => etlActivities(deps).etl(input);
const { train } = trainingActivities(deps);
const { evaluate } = evaluationActivities(deps);
const METRICS = ['recall@10', 'ndcg@10', 'hr@10', 'recall@50', 'ndcg@50', 'hr@50', 'mrr'];
const DROPPED_ITEMS = 5;
const TINY = { epochs: 2, embedding_dim: 16, hidden_dim: 32, history_len: 20, batch_size: 256, lr: 0.01 };

let v1: DatasetVersion;
let v2: DatasetVersion;
let model: TrainResult;
let champion: TrainResult;

// MockActivityEnvironment.run does not infer the activity's result type: name it.
const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run<A, R, typeof fn>(fn, ...args);

const dataset = (name: string, sources: string[]) =>
  run(etl, { name, sources, config: { format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] } });

/** The same log without the rows of its first few items: a later version that indexes items differently. */
async function withoutFirstItems(source: string, name: string): Promise<string> {
  const csv = (await store.getBytes(source))!.toString('utf8');
  const [header, ...lines] = csv.trimEnd().split('\n');
  const itemColumn = header!.split(',').indexOf('item_id');
  const dropped = new Set<string>();
  for (const line of lines) {
    if (dropped.size === DROPPED_ITEMS) break;
    dropped.add(line.split(',')[itemColumn]!);
  }
  const kept = lines.filter((l) => !dropped.has(l.split(',')[itemColumn]!));
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-it-eval-'));
  try {
    const file = path.join(dir, 'interactions.csv');
    await fs.writeFile(file, [header, ...kept].join('\n') + '\n');
    const uri = `s3://${config().bucket}/raw/${name}/later.csv`;
    await store.putFile(uri, file);
    return uri;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const baselineOf = (version: string, training: TrainResult, data: DatasetVersion): EvaluationBaseline => ({
  modelVersion: version,
  modelUri: training.modelUri,
  dataset: data,
});

function expectInterval(iv: Interval | undefined): void {
  expect(iv).toBeDefined();
  expect(iv!.lo).toBeLessThanOrEqual(iv!.point + 1e-12);
  expect(iv!.point).toBeLessThanOrEqual(iv!.hi + 1e-12);
}

beforeAll(async () => {
  const name = uniqueName('it-eval');
  const source = await smallDatasetSource(name);
  v1 = await dataset(name, [source]);
  v2 = await dataset(name, [await withoutFirstItems(source, name)]);
  expect(v2.version).not.toBe(v1.version);
  expect(v2.counts.items).toBe(v1.counts.items - DROPPED_ITEMS);
  const modelName = uniqueName('it-eval');
  model = await run(train, { model: modelName, dataset: v1, config: TINY, nprocPerNode: 1 });
  champion = await run(train, { model: modelName, dataset: v2, config: { ...TINY, seed: 7 }, nprocPerNode: 1 });
});

test('without a champion: intervals, paired differences vs popularity, slices, coverage, novelty and a table', async () => {
  const result = await run(evaluate, { dataset: v1, training: model, k: 10 });
  expect(EvaluationResult.parse(result)).toEqual(result);
  expect(result.reused).toBe(false);
  expect(result.ks).toEqual([10, 50]);
  expect(Object.keys(result.model)).toEqual(METRICS);
  expect(result.baseline).toBeUndefined();
  expect(result.baselineVersion).toBeUndefined();
  expect(result.differences.vsBaseline).toBeUndefined();
  for (const metric of METRICS) {
    expectInterval(result.intervals.model[metric]);
    expect(result.intervals.model[metric]!.point).toBeCloseTo(result.model[metric]!, 12);
    const d = result.differences.vsPopularity[metric]!;
    expect(d.point).toBeCloseTo(result.model[metric]! - result.popularity[metric]!, 12);
    expectInterval(d);
  }
  expect(Object.keys(result.slices)).toEqual(
    expect.arrayContaining(['activity=cold', 'activity=light', 'activity=heavy', 'popularity=tail', 'new_items=yes']),
  );
  const activity = Object.values(result.slices).filter((s) => s.dimension === 'activity');
  expect(activity.reduce((n, s) => n + s.nUsers, 0)).toBe(result.nUsers);
  for (const s of Object.values(result.slices)) {
    expect(s.small).toBe(s.nUsers < 20);
    if (s.nUsers > 0) expectInterval(s.model['ndcg@10']);
  }
  expect(result.coverage.model).toBeGreaterThan(0);
  expect(result.coverage.model).toBeLessThanOrEqual(1);
  expect(result.novelty.model).toBeGreaterThan(0);

  const table = (await store.getBytes(result.tableUri))!.toString('utf8');
  expect(table).toContain('| overall |');
  expect(table).toContain('activity=heavy');
  expect(await store.exists(result.reportUri)).toBe(true);

  const again = await run(evaluate, { dataset: v1, training: model, k: 10 });
  expect(again).toEqual({ ...result, reused: true });
});

test('a model against itself as the champion differs by exactly zero, overall and on every slice', async () => {
  const result = await run(evaluate, { dataset: v1, training: model, baseline: baselineOf('1', model, v1) });
  expect(result.baselineVersion).toBe('1');
  expect(result.baseline).toEqual(result.model);
  expect(result.intervals.baseline).toEqual(result.intervals.model);
  expect(result.coverage.baseline).toBe(result.coverage.model);
  const populations = [result.differences.vsBaseline, ...Object.values(result.slices).map((s) => s.vsBaseline)];
  let checked = 0;
  for (const diffs of populations)
    for (const d of Object.values(diffs ?? {})) {
      expect([d.point, d.lo, d.hi]).toEqual([0, 0, 0]);
      if (d.relative) expect(d.relative).toEqual({ point: 0, lo: 0, hi: 0 });
      checked += 1;
    }
  expect(checked).toBeGreaterThanOrEqual(METRICS.length * 5);
});

test('a champion from another dataset version is compared on the same users, keyed by its version', async () => {
  const result = await run(evaluate, { dataset: v1, training: model, baseline: baselineOf('3', champion, v2) });
  expect(result.reused).toBe(false);
  expect(result.baselineVersion).toBe('3');
  expect(Object.keys(result.baseline!)).toEqual(METRICS);
  expect(result.baseline).not.toEqual(result.model);
  for (const metric of METRICS) {
    const d = result.differences.vsBaseline![metric]!;
    expectInterval(d);
    expect(d.point).toBeCloseTo(result.model[metric]! - result.baseline![metric]!, 12);
  }
  const report = (await store.getJson(result.reportUri)) as { baseline: { n_items_unknown: number } };
  expect(report.baseline.n_items_unknown).toBe(DROPPED_ITEMS);
  // Another champion version is another result, not a reuse of the first.
  const other = await run(evaluate, { dataset: v1, training: model, baseline: baselineOf('4', champion, v2) });
  expect(other.reused).toBe(false);
  expect(other.reportUri).not.toBe(result.reportUri);
  expect(other.differences).toEqual(result.differences);
});

test('a report that does not fit the contract is rejected, naming the field', async () => {
  const result = await run(evaluate, { dataset: v1, training: model, k: 10 });
  const report = (await store.getJson(result.reportUri)) as {
    n_users: unknown;
    overall: { intervals: { model: Record<string, unknown> } };
  };
  expect(() => parseEvaluationReport(report, 'report.json')).not.toThrow();
  delete report.overall.intervals.model.mrr;
  expect(() => parseEvaluationReport(report, 'report.json')).toThrow(
    new EvaluationReportError('report.json: overall.intervals.model has no mrr'),
  );
  report.n_users = 'many';
  expect(() => parseEvaluationReport(report, 'report.json')).toThrow(
    /report\.json is not a valid evaluation report: n_users: /,
  );
});
