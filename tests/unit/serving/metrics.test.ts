/** The Prometheus metrics: names, labels and buckets in the exposition text, and the HTTP endpoint on loopback. */
import { status } from '@grpc/grpc-js';
import { ServingMetrics } from '../../../serving/metrics';
import { startMetricsServer } from '../../../serving/metrics-server';

test('requests, latency, errors by status and fallbacks by reason, per model version; log shipping counters', async () => {
  const m = new ServingMetrics();
  const v3 = m.forVersion('Recommend', 'two-tower', '3');
  v3.served(0.4, undefined);
  v3.served(2.5, 'FALLBACK_REASON_NO_HISTORY');
  expect(m.forVersion('Recommend', 'two-tower', '3')).toBe(v3); // cached
  m.forVersion('Recommend', 'two-tower', '4').failed(status.INVALID_ARGUMENT);
  m.forVersion('Recommend', '', '').failed(status.UNAVAILABLE);
  m.forVersion('Feedback', 'two-tower', '3').served(undefined, undefined);
  m.shipped('recommend', 7);
  m.spilled('feedback');
  m.uploadFailed();

  const text = await m.text();
  expect(text).toContain('recsys_requests_total{method="Recommend",model="two-tower",version="3"} 2');
  expect(text).toContain('recsys_requests_total{method="Feedback",model="two-tower",version="3"} 1');
  expect(text).toContain(
    'recsys_request_duration_seconds_bucket{le="0.0005",method="Recommend",model="two-tower",version="3"} 1',
  );
  expect(text).toContain(
    'recsys_request_duration_seconds_bucket{le="0.003",method="Recommend",model="two-tower",version="3"} 2',
  );
  expect(text).toContain('recsys_request_duration_seconds_count{method="Recommend",model="two-tower",version="3"} 2');
  expect(text).not.toContain('recsys_request_duration_seconds_count{method="Feedback"');
  expect(text).toContain(
    'recsys_request_errors_total{method="Recommend",model="two-tower",version="4",code="INVALID_ARGUMENT"} 1',
  );
  expect(text).toContain('recsys_request_errors_total{method="Recommend",model="",version="",code="UNAVAILABLE"} 1');
  expect(text).toContain('recsys_fallbacks_total{model="two-tower",version="3",reason="FALLBACK_REASON_NO_HISTORY"} 1');
  expect(text).toContain('recsys_log_records_shipped_total{kind="recommend"} 7');
  expect(text).toContain('recsys_log_chunks_spilled_total{kind="feedback"} 1');
  expect(text).toContain('recsys_log_upload_failures_total 1');
  // Its own registry: a second instance starts from zero.
  expect(await new ServingMetrics().text()).not.toContain('version="3"');
});

test('GET /metrics over HTTP on 127.0.0.1; other paths are 404', async () => {
  const m = new ServingMetrics();
  m.forVersion('Recommend', 'x', '1').served(1, undefined);
  const server = await startMetricsServer(m, 0);
  try {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(await res.text()).toContain('recsys_requests_total{method="Recommend",model="x",version="1"} 1');
    expect((await fetch(server.url.replace('/metrics', '/'))).status).toBe(404);
  } finally {
    await server.close();
  }
});
