/**
 * The traffic simulator with stand-in models (no stack needed): open-loop rate and time bound, clicks judged against
 * held-out items and delivered as feedback naming the request, the concurrency cap, loopback-only addresses, and the
 * command line's fault and dataset specs.
 */
import { FaultTable } from '../../../serving/faults';
import { LoadedModel } from '../../../serving/loaded-model';
import { telemetryHooks } from '../../../serving/log-hooks';
import { ServingMetrics } from '../../../serving/metrics';
import type { ModelLoader } from '../../../serving/model-loader';
import { ModelPool } from '../../../serving/model-pool';
import type { ModelRef } from '../../../serving/model-ref';
import { startServer, type RunningServer } from '../../../serving/server';
import { addScrape, parsePrometheus } from '../../../fleet/version-metrics';
import { simulate } from '../../../fleet/simulate/run';
import { quantile } from '../../../fleet/simulate/stats';
import { datasetFromUri, parseFaultSpec } from '../../../fleet/simulate/target';
import { expandPopulation, type SimUser } from '../../../fleet/simulate/workload';
import { FakeRanker, fakeCatalog, fakeServable } from '../serving/fakes';

class FakeLoader implements ModelLoader {
  constructor(private readonly delayMs = 0) {}
  resolve(ref: ModelRef) {
    return Promise.resolve(fakeServable(ref.name, ref.version ?? '1'));
  }
  load(v: ReturnType<typeof fakeServable>) {
    const ranker = new FakeRanker();
    ranker.delayMs = this.delayMs;
    return Promise.resolve(new LoadedModel(v, ranker, fakeCatalog()));
  }
}

async function server(delayMs = 0): Promise<{ running: RunningServer; metrics: ServingMetrics }> {
  const pool = new ModelPool(new FakeLoader(delayMs));
  await pool.loadVersion({ name: 'm', version: '1' });
  const metrics = new ServingMetrics();
  const running = await startServer({
    slot: pool,
    port: 0,
    hooks: telemetryHooks({ slot: pool, metrics }),
    faults: new FaultTable(),
  });
  return { running, metrics };
}

// The fake ranks a, b, c, d, e; history f. Users whose held-out items include one of those click.
const users: SimUser[] = [
  { userId: 'clicker', history: ['f'], heldOut: new Set(['c']) },
  { userId: 'bored', history: ['f'], heldOut: new Set(['zz']) },
];

test('open loop at the target rate for the given time; clicks on held-out items reach the server', async () => {
  const { running, metrics } = await server();
  try {
    const started = Date.now();
    const r = await simulate({ addresses: [running.address], users, qps: 100, seconds: 1.5, k: 5 });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(4000);
    expect(r.requests).toBeGreaterThanOrEqual(140);
    expect(r.requests).toBeLessThanOrEqual(151);
    expect(r.errors).toBe(0);
    expect(r.dropped).toBe(0);
    const v = r.perVersion['1']!;
    expect(v.requests).toBe(r.requests);
    // About half the calls are for the clicker (random user per call): a binomial with n ~150 is within 0.3..0.7.
    expect(v.ctr).toBeGreaterThan(0.3);
    expect(v.ctr).toBeLessThan(0.7);
    expect(v.clicks + v.impressions).toBe(v.requests);
    expect(r.feedbackSent).toBe(r.requests);
    const counted = addScrape({}, parsePrometheus(await metrics.text()))['1']!;
    expect(counted.feedback).toEqual({ click: v.clicks, impression: v.impressions });
    expect(counted.eligible).toBe(v.requests);
  } finally {
    await running.shutdown(1000);
  }
});

test('a slow server does not slow the schedule: calls beyond the concurrency cap are dropped, not queued', async () => {
  const { running } = await server(200);
  try {
    const r = await simulate({ addresses: [running.address], users, qps: 100, seconds: 1, k: 5, concurrency: 5 });
    // 5 in flight at 200 ms each: ~25 calls/s get through, the rest of the 100 due are dropped.
    expect(r.requests).toBeLessThan(45);
    expect(r.requests + r.dropped).toBeGreaterThanOrEqual(95);
    expect(r.errors).toBe(0);
    expect(r.p50Ms!).toBeGreaterThanOrEqual(190);
  } finally {
    await running.shutdown(1000);
  }
});

test('options are checked; remote addresses need allowRemote', async () => {
  const o = { addresses: ['127.0.0.1:1'], users, qps: 10, seconds: 1 };
  await expect(simulate({ ...o, addresses: ['10.0.0.1:50051'] })).rejects.toThrow(
    'address 10.0.0.1:50051 is not a loopback host:port',
  );
  await expect(simulate({ ...o, qps: 0 })).rejects.toThrow('qps must be in (0, 5000], got 0');
  await expect(simulate({ ...o, users: [] })).rejects.toThrow('no simulated users');
});

test('nothing listening: every call fails UNAVAILABLE and the run still ends on time', async () => {
  const r = await simulate({ addresses: ['127.0.0.1:1'], users, qps: 20, seconds: 0.5, timeoutMs: 500 });
  expect(r.requests).toBeGreaterThanOrEqual(9);
  expect(r.errors).toBe(r.requests);
  expect(Object.keys(r.errorsByCode)).toEqual(['UNAVAILABLE']);
  expect(r.perVersion).toEqual({});
});

test('fault specs and dataset URIs from the command line', () => {
  expect(parseFaultSpec('latency=200ms')).toEqual({
    added_latency_ms: 200,
    error_rate: 0,
    random_recommendations: false,
  });
  expect(parseFaultSpec('errors=0.2,random')).toEqual({
    added_latency_ms: 0,
    error_rate: 0.2,
    random_recommendations: true,
  });
  expect(parseFaultSpec('latency=1s')).toMatchObject({ added_latency_ms: 1000 });
  expect(parseFaultSpec('none')).toEqual({ added_latency_ms: 0, error_rate: 0, random_recommendations: false });
  expect(() => parseFaultSpec('errors=2')).toThrow('--fault: cannot read "errors=2"');
  expect(datasetFromUri('s3://recsys/datasets/ml-100k/73b2/')).toEqual({
    name: 'ml-100k',
    version: '73b2',
    manifestUri: 's3://recsys/datasets/ml-100k/73b2/manifest.json',
  });
  expect(quantile([5, 1, 3, 2, 4], 0.5)).toBe(3);
  expect(quantile([], 0.99)).toBeNull();
});

describe('expandPopulation', () => {
  it('copies the held-out users under pseudonymous ids, each real user equally often', () => {
    const users = ['a', 'b', 'c'].map((userId) => ({ userId, history: [userId], heldOut: new Set([userId]) }));
    const pop = expandPopulation(users, 7);
    expect(pop.map((u) => u.userId)).toEqual(['a~0', 'b~0', 'c~0', 'a~1', 'b~1', 'c~1', 'a~2']);
    expect(pop[4]!.history).toEqual(['b']);
    expect(expandPopulation(users, 2).map((u) => u.userId)).toEqual(['a', 'b']);
    expect(() => expandPopulation(users, 0)).toThrow(/population must be a positive integer, got 0/);
  });
});
