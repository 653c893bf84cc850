/**
 * The HTTP/JSON API of a real `recsys serve` process against the real stack: a tiny model is trained and registered
 * by continuousTraining, its artefact registered again as a second version, both loaded into one server through
 * recsys.v1.Admin and split 50/50. HTTP calls go through the same traffic policy as gRPC calls (each user gets the
 * same version over both protocols, both versions get HTTP traffic), land in the same /metrics under
 * method="http_recommend" / "http_events", and the CLI's `--http` reaches the same server. The process drains and
 * closes its HTTP port on SIGTERM.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadVersion, setTrafficPolicy } from '../../fleet/admin';
import { config } from '../../lib/config';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { recommend, recommenderClient } from '../../serving/client';
import { HttpApiError, httpEvents, httpGet, httpRecommend } from '../../serving/http/client';
import type { RecommendRequest, RecommenderClient } from '../../serving/proto';
import { spawnServe, type ServeProcess } from './serve-process';
import { useTemporal } from './stack';
import { trainTinyModel } from './training-fixture';

const ROOT = path.resolve(__dirname, '..', '..');
const temporal = useTemporal();
const mlflow = new MlflowClient();

let model: string;
let v1: string;
let v2: string;
let serve: ServeProcess;
let address: string;
let httpUrl: string;
let metricsUrl: string;
let grpcClient: RecommenderClient;
let history: { item_id: string; timestamp_ms: number }[];

beforeAll(async () => {
  const tiny = await trainTinyModel(temporal, 'it-http', { epochs: 1 });
  model = tiny.model;
  v1 = tiny.trained.registered.version;
  const registered = await mlflow.getModelVersion(model, v1);
  const run = await mlflow.getRun(tiny.trained.registered.mlflowRunId);
  v2 = (await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, tagsOf(registered)))
    .version;
  serve = spawnServe([
    ...['--model', model, '--version', v1, '--port', '0', '--metrics-port', '0', '--http-port', '0'],
    ...['--log-prefix', `s3://${config().bucket}/test-serving-logs/${model}`],
  ]);
  address = (await serve.waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/))[1]!;
  metricsUrl = (await serve.waitFor(/Metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/))[1]!;
  httpUrl = (await serve.waitFor(/Serving HTTP\/JSON on (http:\/\/127\.0\.0\.1:\d+) /))[1]!;
  await loadVersion(address, model, v2, 120_000);
  await setTrafficPolicy(address, { [v1]: 50, [v2]: 50 });
  grpcClient = recommenderClient(address);
  // Three items the model knows (the first ids of its catalogue are the dataset's): from a dataset user's answer.
  const probe = await recommend(grpcClient, { user_id: 'probe', history: [], k: 3, exclude_item_ids: [] });
  history = probe.items.map((it, i) => ({ item_id: it.item_id, timestamp_ms: 1000 * (i + 1) }));
});

afterAll(async () => {
  grpcClient?.close();
  if (serve && serve.child.exitCode === null) {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
});

/** recsys_requests_total of `method` per version, from the server's /metrics. */
async function requestsByVersion(method: string): Promise<Record<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out: Record<string, number> = {};
  const re = new RegExp(
    `^recsys_requests_total\\{method="${method}",model="${model}",version="(\\d+)"\\} (\\d+)$`,
    'gm',
  );
  for (const m of text.matchAll(re)) out[m[1]!] = Number(m[2]);
  return out;
}

test('/readyz lists both versions and the split; /v1/openapi.json is served', async () => {
  const ready = await httpGet<{ status: string; versions: unknown[] }>(httpUrl, '/readyz');
  expect(ready.body).toEqual({
    status: 'ready',
    versions: [
      { model_name: model, model_version: v1, weight: 50 },
      { model_name: model, model_version: v2, weight: 50 },
    ],
  });
  const doc = await httpGet<{ openapi: string; paths: Record<string, unknown> }>(httpUrl, '/v1/openapi.json');
  expect(doc.body.openapi).toBe('3.1.0');
  expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/v1/recommend', '/v1/events']));
});

test('a 50/50 split applies to HTTP calls as to gRPC calls: same user, same version; both versions get HTTP traffic', async () => {
  const before = await requestsByVersion('http_recommend');
  const users = Array.from({ length: 200 }, (_, i) => `it-http-user-${i}`);
  const req = (user_id: string): RecommendRequest => ({ user_id, history, k: 5, exclude_item_ids: [] });
  const overGrpc = await Promise.all(users.map((u) => recommend(grpcClient, req(u))));
  const overHttp = await Promise.all(users.map((u) => httpRecommend(httpUrl, req(u))));
  expect(overHttp.map((r) => r.body.model_version)).toEqual(overGrpc.map((r) => r.model_version));
  // The same lineage in the headers as in the body; the same ranking as over gRPC (same graph, same history).
  for (const [i, r] of overHttp.entries()) {
    expect(r.headers.get('x-recsys-model')).toBe(model);
    expect(r.headers.get('x-recsys-model-version')).toBe(r.body.model_version);
    expect(r.headers.get('x-request-id')).toBe(r.body.request_id);
    expect(r.body.items).toEqual(overGrpc[i]!.items);
    expect(r.body).toMatchObject({ fallback: false, history_source: 'HISTORY_SOURCE_REQUEST' });
  }
  const onV2 = overHttp.filter((r) => r.body.model_version === v2).length;
  // Binomial sd at 200 users is 3.5 points; 15 points is over four of them.
  expect(Math.abs(onV2 / users.length - 0.5)).toBeLessThan(0.15);

  // Every HTTP call is in /metrics under method="http_recommend", per the version that answered it.
  const after = await requestsByVersion('http_recommend');
  expect((after[v1] ?? 0) - (before[v1] ?? 0)).toBe(users.length - onV2);
  expect((after[v2] ?? 0) - (before[v2] ?? 0)).toBe(onV2);
});

test('HTTP errors: 400 naming the field, counted under method="http_recommend"', async () => {
  const err = await httpRecommend(httpUrl, { user_id: 'u', k: 10_000 }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(HttpApiError);
  expect(err).toMatchObject({ httpStatus: 400, code: 'INVALID_ARGUMENT', field: 'k' });
  expect((err as HttpApiError).message).toMatch(/k must be between 1 and \d+ \(the model's top_k\), got 10000/);
  expect((err as HttpApiError).headers.get('x-recsys-model')).toBe(model);
  const text = await (await fetch(metricsUrl)).text();
  expect(text).toMatch(
    new RegExp(
      `recsys_request_errors_total\\{method="http_recommend",model="${model}",version="\\d+",code="INVALID_ARGUMENT"\\} 1`,
    ),
  );
});

test('a batch of events over HTTP is answered per event and counted under method="http_events"', async () => {
  const res = await httpEvents(httpUrl, [
    { user_id: 'it-http-user-1', item_id: history[0]!.item_id, event: 'FEEDBACK_EVENT_CLICK', timestamp_ms: 5000 },
    { user_id: 'it-http-user-2', item_id: history[1]!.item_id, event: 'FEEDBACK_EVENT_IMPRESSION', event_id: 'e-2' },
  ]);
  expect(res.body.results).toHaveLength(2);
  for (const r of res.body.results) expect(r).toEqual({ recorded_online: expect.any(Boolean), duplicate: false });
  const counted = await requestsByVersion('http_events');
  expect(Object.values(counted).reduce((a, b) => a + b, 0)).toBe(2);
});

test('the CLI reaches the same server over --http: `recsys recommend` and `recsys event`', async () => {
  const recsys = (args: string[]) =>
    promisify(execFile)(path.join(ROOT, 'cli', 'bin', 'recsys'), args, { cwd: ROOT }).then((r) => r.stdout);
  const user = 'it-http-user-7';
  const viaGrpc = await recsys(['recommend', '--user', user, '--k', '3', '--address', address]);
  const viaHttp = await recsys(['recommend', '--user', user, '--k', '3', '--http', httpUrl]);
  const versionOf = (out: string) => /^Model: +\S+ v(\d+)$/m.exec(out)?.[1];
  expect(versionOf(viaHttp)).toBeDefined();
  expect(versionOf(viaHttp)).toBe(versionOf(viaGrpc));
  expect(viaHttp).toContain(`Via:       HTTP ${httpUrl}`);
  expect(viaHttp).toMatch(/^History source: (online store|dataset \(as of training\)|none \(popularity\))/m);
  const event = await recsys([
    'event',
    '--user',
    user,
    '--item',
    history[0]!.item_id,
    '--type',
    'click',
    '--http',
    httpUrl,
  ]);
  expect(event).toContain(`FEEDBACK_EVENT_CLICK by ${user} on ${history[0]!.item_id}`);
  expect(event).toMatch(/^Outcome: +(recorded in the online store|not recorded in the online store)/m);
  const overGrpc = await recsys([
    'event',
    '--user',
    user,
    '--item',
    history[0]!.item_id,
    '--type',
    'add-to-cart',
    '--address',
    address,
  ]);
  expect(overGrpc).toContain('FEEDBACK_EVENT_ADD_TO_CART');
});

test('SIGTERM: the HTTP port drains and closes with the gRPC server', async () => {
  serve.child.kill('SIGTERM');
  expect(await serve.exited).toBe(0);
  expect(serve.output()).toContain('Stopped');
  await expect(fetch(`${httpUrl}/healthz`)).rejects.toThrow();
});
