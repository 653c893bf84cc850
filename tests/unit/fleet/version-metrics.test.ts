/**
 * Per-version online metrics for canary analysis: parsing the serving tier's real exposition text, summing replicas,
 * histogram quantiles, and the statistics of a window between two snapshots; plus the environments' port layout.
 */
import { status } from '@grpc/grpc-js';
import { portBases, replica, replicaSlots } from '../../../fleet/environments';
import { ServingMetrics } from '../../../serving/metrics';
import {
  addScrape,
  histogramQuantile,
  parsePrometheus,
  windowStats,
  type MetricsSnapshot,
} from '../../../fleet/version-metrics';

test('histogramQuantile interpolates inside the bucket, like Prometheus; +Inf reports the last finite bound', () => {
  const bounds = [0.01, 0.1, 1];
  // 100 observations: 50 at or below 10 ms, 40 in (10, 100] ms, 9 in (100 ms, 1 s], 1 above 1 s.
  const cumulative = [50, 90, 99, 100];
  expect(histogramQuantile(0.5, bounds, cumulative)).toBeCloseTo(0.01);
  expect(histogramQuantile(0.25, bounds, cumulative)).toBeCloseTo(0.005);
  expect(histogramQuantile(0.7, bounds, cumulative)).toBeCloseTo(0.01 + 0.09 * (20 / 40));
  expect(histogramQuantile(0.99, bounds, cumulative)).toBeCloseTo(1);
  expect(histogramQuantile(0.995, bounds, cumulative)).toBe(1); // in +Inf: the largest finite bound
  expect(histogramQuantile(0.99, bounds, [0, 0, 0, 0])).toBeNull();
  expect(() => histogramQuantile(99, bounds, cumulative)).toThrow('quantile must be in [0, 1], got 99');
});

/** Real exposition text from ServingMetrics, as a replica serves it. */
async function replicaText(
  latenciesMs: Record<string, number[]>,
  errors: Record<string, number>,
  clicks: Record<string, number>,
) {
  const m = new ServingMetrics();
  for (const [v, ls] of Object.entries(latenciesMs))
    for (const l of ls) {
      m.forVersion('Recommend', 'mdl', v).served(l, undefined);
      m.recommended('mdl', v);
    }
  for (const [v, n] of Object.entries(errors))
    for (let i = 0; i < n; i++) m.forVersion('Recommend', 'mdl', v).failed(status.INTERNAL);
  for (const [v, n] of Object.entries(clicks))
    for (let i = 0; i < n; i++) m.feedback('FEEDBACK_EVENT_CLICK', { model: 'mdl', version: v });
  m.feedback('FEEDBACK_EVENT_CLICK', undefined); // unattributed: counted for no version
  m.forVersion('Feedback', 'mdl', '1').served(undefined, undefined); // Feedback calls are not Recommend requests
  return m.text();
}

test('a snapshot sums replicas per version; a window gives error rate, latency quantiles and CTR', async () => {
  const a = parsePrometheus(await replicaText({ '1': [1, 1, 1, 1], '2': [200, 200] }, { '2': 2 }, { '1': 1 }));
  const b = parsePrometheus(await replicaText({ '1': [1, 1, 1, 1] }, { '2': 0 }, { '1': 1 }));
  expect(a.find((s) => s.name === 'recsys_requests_total' && s.labels.version === '2')).toMatchObject({
    labels: { method: 'Recommend', model: 'mdl', version: '2' },
    value: 2,
  });
  const before: MetricsSnapshot = { at: 't0', versions: {} };
  const after: MetricsSnapshot = { at: 't1', versions: addScrape(addScrape({}, a), b) };
  expect(after.versions['1']).toMatchObject({ requests: 8, errors: 0, eligible: 8, feedback: { click: 2 } });
  expect(after.versions['2']).toMatchObject({ requests: 2, errors: 2 });
  expect(after.versions['1']!.latency.cumulative.at(-1)).toBe(8);
  // JSON-safe (Temporal payloads): no Infinity anywhere.
  expect(JSON.parse(JSON.stringify(after))).toEqual(after);

  const w = windowStats(before, after);
  expect(w['1']).toMatchObject({ requests: 8, errors: 0, errorRate: 0, clicks: 2, eligible: 8, ctr: 0.25 });
  expect(w['1']!.p99Ms!).toBeGreaterThan(0.75);
  expect(w['1']!.p99Ms!).toBeLessThanOrEqual(1);
  expect(w['2']).toMatchObject({ requests: 4, errors: 2, errorRate: 0.5, clicks: 0, ctr: 0 });
  // 200 ms lands in the (100 ms, 250 ms] bucket.
  expect(w['2']!.p99Ms!).toBeGreaterThan(100);
  expect(w['2']!.p99Ms!).toBeLessThanOrEqual(250);

  // The window is the difference: the same snapshot twice is an empty window.
  expect(windowStats(after, after)['1']).toMatchObject({ requests: 0, errorRate: 0, p99Ms: null, ctr: null });
  // Only the versions asked for.
  expect(Object.keys(addScrape({}, a, ['2']))).toEqual(['2']);
});

test('a replica that restarted (counters back to 0) never gives negative counts', async () => {
  const high = addScrape({}, parsePrometheus(await replicaText({ '1': [1, 1, 1] }, { '1': 3 }, { '1': 2 })));
  const low = addScrape({}, parsePrometheus(await replicaText({ '1': [1] }, {}, {})));
  const w = windowStats({ at: 'a', versions: high }, { at: 'b', versions: low })['1']!;
  expect(w.requests).toBe(0);
  expect(w.errors).toBe(0);
  expect(w.clicks).toBe(0);
});

test('environments: fixed loopback ports per environment and replica; the base is configurable', () => {
  const saved = { ...process.env };
  try {
    delete process.env.RECSYS_ENV_PORT_BASE;
    delete process.env.RECSYS_ENV_METRICS_PORT_BASE;
    delete process.env.RECSYS_ENV_HTTP_PORT_BASE;
    process.env.RECSYS_STACK_DIR = '/tmp/stack';
    expect(portBases()).toEqual({ grpc: 50051, metrics: 9464, http: 8081 });
    expect(replica('production', 0)).toMatchObject({
      address: '127.0.0.1:50051',
      metricsUrl: 'http://127.0.0.1:9464/metrics',
      httpUrl: 'http://127.0.0.1:8081',
      name: 'env-production-50051',
      pidFile: '/tmp/stack/run/env-production-50051.pid',
      logFile: '/tmp/stack/logs/env-production-50051.log',
    });
    expect(replica('staging', 2)).toMatchObject({ address: '127.0.0.1:50063', metricsPort: 9476, httpPort: 8093 });
    process.env.RECSYS_ENV_PORT_BASE = '41000';
    process.env.RECSYS_ENV_METRICS_PORT_BASE = '42000';
    expect(replica('staging', 0)).toMatchObject({ address: '127.0.0.1:41010', metricsPort: 42010 });
    const ports = [...replicaSlots('staging'), ...replicaSlots('production')].map((r) => r.grpcPort);
    expect(new Set(ports).size).toBe(20);
    process.env.RECSYS_ENV_PORT_BASE = 'x';
    expect(() => portBases()).toThrow('RECSYS_ENV_PORT_BASE must be an integer port');
    expect(() => replica('staging', 10, { grpc: 1000, metrics: 2000, http: 3000 })).toThrow(
      'replica index must be in [0, 9], got 10',
    );
  } finally {
    process.env = saved;
  }
});
