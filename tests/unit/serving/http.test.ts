/**
 * The HTTP/JSON API (serving/http/) against the real express app on a real loopback socket, over a RecommenderCore
 * with stand-in models (no stack needed): bodies refused with 400 and a message naming the field and the limit
 * (malformed JSON, wrong types, out-of-range k, unknown fields at any depth, oversized bodies), readiness, the OpenAPI
 * document, events single and batched, the traffic split, the hooks (request log, metrics) and the drain on close.
 */
import http from 'node:http';
import { status } from '@grpc/grpc-js';
import { LoadedModel } from '../../../serving/loaded-model';
import type { ModelLoader } from '../../../serving/model-loader';
import type { ServableVersion } from '../../../serving/model-version';
import { ModelPool } from '../../../serving/model-pool';
import type { HistoryRead, OnlineStore, RecordOutcome, StoreEvent } from '../../../serving/online-store';
import type { FeedbackRequest } from '../../../serving/proto';
import { RecommenderCore, type Method } from '../../../serving/recommender-core';
import { startHttpServer, type HttpServer } from '../../../serving/http/server';
import { FakeRanker, fakeCatalog, fakeServable } from './fakes';

class FakeLoader implements ModelLoader {
  resolve(ref: { name: string; version?: string }): Promise<ServableVersion> {
    return Promise.resolve(fakeServable('fake-model', ref.version ?? '1'));
  }
  load(v: ServableVersion): Promise<LoadedModel> {
    return Promise.resolve(new LoadedModel(v, new FakeRanker(), fakeCatalog()));
  }
}

/** An in-memory store: idempotent by event id; histories are what was recorded. */
class MemoryStore implements OnlineStore {
  readonly seen = new Map<string, StoreEvent>();
  recentHistory(_ns: string, userId: string): Promise<HistoryRead> {
    const items = [...this.seen.values()]
      .filter((e) => e.userId === userId)
      .map((e) => ({ item_id: e.itemId, timestamp_ms: e.timeMs }));
    return Promise.resolve({ status: 'ok', items });
  }
  record(_ns: string, events: readonly StoreEvent[]): Promise<RecordOutcome[]> {
    return Promise.resolve(
      events.map((e) => {
        const duplicate = this.seen.has(e.eventId);
        this.seen.set(e.eventId, e);
        return { status: 'recorded', duplicate };
      }),
    );
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A JSON body: an error's, or any other (asserted on with matchers). */
interface Body {
  error?: { code: string; message: string; field: string | null };
  [key: string]: unknown;
}
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Body;
}

/** What the OpenAPI test reads of the document. */
interface Schema {
  $ref?: string;
  oneOf?: Schema[];
  [key: string]: unknown;
}
type Content = { content: Record<string, { schema: Schema }> };
interface OpenApi {
  openapi: string;
  paths: Record<string, { post: { requestBody: Content; responses: Record<string, Content> } }>;
  components: Record<string, Record<string, Schema>>;
}

/** A raw request: exactly these bytes and headers (fetch would not send a malformed body as is). */
function request(
  base: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: http.OutgoingHttpHeaders = body === undefined ? {} : { 'content-type': 'application/json' },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode!, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Body });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

let pool: ModelPool;
let store: MemoryStore;
let server: HttpServer;
const recommended: { user: string; version: string; method: Method }[] = [];
const errors: { method: Method; code: status; version: string | undefined }[] = [];
const feedbackSeen: { event: FeedbackRequest; method: Method }[] = [];

const post = (path: string, body: unknown) => request(server.url, 'POST', path, JSON.stringify(body));
const recommend = (body: Record<string, unknown>) => post('/v1/recommend', { user_id: 'u1', k: 3, ...body });
const ranker = () => pool.active!.ranker as FakeRanker;

beforeAll(async () => {
  pool = new ModelPool(new FakeLoader());
  store = new MemoryStore();
  const hooks = {
    onRecommend: (req: { user_id: string }, res: { model_version: string }, _at: number, _ms: number, method: Method) =>
      recommended.push({ user: req.user_id, version: res.model_version, method }),
    onError: (method: Method, code: status, v: ServableVersion | undefined) =>
      errors.push({ method, code, version: v?.version }),
    onFeedback: (event: FeedbackRequest, _at: number, method: Method) => feedbackSeen.push({ event, method }),
  };
  const core = new RecommenderCore(pool, { hooks, store });
  server = await startHttpServer({ core, hooks, port: 0 });
});

afterAll(async () => {
  await server.close(1000);
  await pool.close();
});

test('binds loopback only', async () => {
  expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  await expect(startHttpServer({ core: new RecommenderCore(pool), port: 0, host: '0.0.0.0' })).rejects.toThrow(
    'refusing to serve HTTP on "0.0.0.0": not a loopback address',
  );
});

test('before a version is loaded: /healthz 200, /readyz 503, recommend 503 UNAVAILABLE', async () => {
  const health = await request(server.url, 'GET', '/healthz');
  expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
  expect(health.headers['x-powered-by']).toBeUndefined();
  const ready = await request(server.url, 'GET', '/readyz');
  expect(ready.status).toBe(503);
  expect(ready.body).toEqual({
    error: { code: 'UNAVAILABLE', message: 'no model version is loaded yet', field: null },
  });
  const res = await recommend({});
  expect(res.status).toBe(503);
  expect(res.body.error).toMatchObject({ code: 'UNAVAILABLE', message: 'no model version is loaded yet' });
  expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(res.headers['x-recsys-model']).toBeUndefined(); // no version answered
});

test('once loaded: /readyz 200; recommend answers the RecommendResponse with enums by name and the lineage', async () => {
  await pool.load({ name: 'fake-model', version: '1' });
  const ready = await request(server.url, 'GET', '/readyz');
  expect(ready).toMatchObject({
    status: 200,
    body: { status: 'ready', versions: [{ model_name: 'fake-model', model_version: '1', weight: 100 }] },
  });
  const res = await recommend({ user_id: 'new-user', history: [{ item_id: 'f', timestamp_ms: 5 }], k: 3 });
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.body).toEqual({
    items: [
      { item_id: 'a', score: 5 },
      { item_id: 'b', score: 4 },
      { item_id: 'c', score: 3 },
    ],
    model_name: 'fake-model',
    model_version: '1',
    dataset_name: 'fake-data',
    dataset_version: 'data-1',
    request_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    fallback: false,
    fallback_reason: 'FALLBACK_REASON_UNSPECIFIED',
    history_source: 'HISTORY_SOURCE_REQUEST',
    online_store_degraded: false,
    route: 'single',
    stages: [{ name: 'model', graph_sha256: '0'.repeat(64), latency_ms: expect.any(Number) }],
  });
  expect(res.headers).toMatchObject({
    'x-request-id': res.body.request_id,
    'x-recsys-model': 'fake-model',
    'x-recsys-model-version': '1',
    'x-recsys-dataset': 'fake-data',
    'x-recsys-dataset-version': 'data-1',
  });
  expect(res.headers['x-powered-by']).toBeUndefined();
  expect(res.headers.etag).toBeUndefined();
  expect(recommended.at(-1)).toEqual({ user: 'new-user', version: '1', method: 'http_recommend' });
  // history, exclude_item_ids and timestamp_ms are optional; a known user gets the dataset's history.
  const bare = await recommend({ user_id: 'u1', k: 2 });
  expect(bare.body).toMatchObject({
    history_source: 'HISTORY_SOURCE_DATASET',
    items: [{ item_id: 'c' }, { item_id: 'd' }],
  });
});

test('malformed JSON, a body that is not JSON and an oversized body: 400 with the reason and the limit', async () => {
  const bad = await request(server.url, 'POST', '/v1/recommend', '{"user_id": "u1", "k": 3,');
  expect(bad.status).toBe(400);
  expect(bad.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field: null });
  expect(bad.body.error!.message).toMatch(/^the request body is not valid JSON: /);
  expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(bad.headers['x-recsys-model-version']).toBe('1'); // errors carry the lineage too

  const text = await request(server.url, 'POST', '/v1/recommend', 'user_id=u1', { 'content-type': 'text/plain' });
  expect(text.status).toBe(400);
  expect(text.body.error!.message).toBe(
    'the request body must be JSON (content-type: application/json), got content-type text/plain',
  );

  const big = JSON.stringify({
    user_id: 'u1',
    k: 3,
    exclude_item_ids: Array.from({ length: 120_000 }, () => 'item-x'),
  });
  expect(big.length).toBeGreaterThan(1024 * 1024);
  const huge = await request(server.url, 'POST', '/v1/recommend', big);
  expect(huge.status).toBe(400);
  expect(huge.body.error!.message).toBe(
    `the request body is ${Buffer.byteLength(big)} bytes; the limit is 1048576 bytes (1 MiB)`,
  );
  const onEvents = await request(server.url, 'POST', '/v1/events', big);
  expect(onEvents.status).toBe(400);
  expect(onEvents.body.error!.message).toContain('the limit is 1048576 bytes');
});

test('wrong types: 400 naming the field, what it must be and what it was', async () => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ user_id: 5 }, 'user_id', 'user_id must be a string, got 5'],
    [{ k: '3' }, 'k', 'k must be an integer, got "3"'],
    [{ k: 2.5 }, 'k', 'k must be an integer, got 2.5'],
    [{ history: 'a,b' }, 'history', 'history must be an array, got "a,b"'],
    [
      { history: [{ item_id: 'a', timestamp_ms: '1' }] },
      'history[0].timestamp_ms',
      'history[0].timestamp_ms must be an integer, got "1"',
    ],
    [{ history: [{ timestamp_ms: 1 }] }, 'history[0].item_id', 'history[0].item_id is required'],
    [{ exclude_item_ids: [1] }, 'exclude_item_ids[0]', 'exclude_item_ids[0] must be a string, got 1'],
    [{ user_id: '' }, 'user_id', 'user_id must not be empty'],
    [{ user_id: 'u'.repeat(300) }, 'user_id', 'user_id is 300 characters long; the limit is 256'],
  ];
  for (const [body, field, message] of cases) {
    const res = await recommend(body);
    expect({ body, status: res.status, error: res.body.error }).toEqual({
      body,
      status: 400,
      error: { code: 'INVALID_ARGUMENT', field, message },
    });
  }
  const noUser = await post('/v1/recommend', { k: 3 });
  expect(noUser.body.error).toEqual({ code: 'INVALID_ARGUMENT', field: 'user_id', message: 'user_id is required' });
  const array = await post('/v1/recommend', [{ user_id: 'u1' }]);
  expect(array.body.error).toEqual({
    code: 'INVALID_ARGUMENT',
    field: null,
    message: 'the body must be an object, got an array',
  });
});

test("out-of-range k: the model's top_k from the version that serves, the absolute bounds from the schema", async () => {
  const over = await recommend({ k: 6 });
  expect(over.status).toBe(400);
  expect(over.body.error).toEqual({
    code: 'INVALID_ARGUMENT',
    field: 'k',
    message: "k must be between 1 and 5 (the model's top_k), got 6",
  });
  expect(over.headers['x-recsys-model-version']).toBe('1');
  expect((await recommend({ k: 0 })).body.error).toEqual({
    code: 'INVALID_ARGUMENT',
    field: 'k',
    message: 'k must be at least 1, got 0',
  });
  expect((await recommend({ k: 2 ** 31 })).body.error!.message).toBe('k must be at most 2147483647, got 2147483648');
  const tooLong = await recommend({ history: Array.from({ length: 1001 }, () => ({ item_id: 'a' })) });
  expect(tooLong.body.error).toMatchObject({ field: 'history', message: 'history has 1001 items; the limit is 1000' });
});

test('unknown fields are refused, at the top level and nested, naming the field and the ones that exist', async () => {
  const top = await recommend({ userId: 'u1' });
  expect(top.status).toBe(400);
  expect(top.body.error).toEqual({
    code: 'INVALID_ARGUMENT',
    field: 'userId',
    message:
      'unknown field userId: the body has only user_id, history, k, exclude_item_ids ' +
      '(fields the contract does not define are refused)',
  });
  const nested = await recommend({ history: [{ item_id: 'a' }, { item_id: 'b', ts: 1 }] });
  expect(nested.body.error).toMatchObject({
    field: 'history[1].ts',
    message: expect.stringMatching(/^unknown field history\[1\]\.ts: history\[1\] has only item_id, timestamp_ms /),
  });
  // An unknown field is reported before any other problem of the body, as on the gRPC side.
  expect((await recommend({ k: 'x', extra: true })).body.error!.field).toBe('extra');
  const inBatch = await post('/v1/events', {
    events: [{ user_id: 'u1', item_id: 'a', event: 'FEEDBACK_EVENT_CLICK', rating: 5 }],
  });
  expect(inBatch.body.error).toMatchObject({ field: 'events[0].rating' });
  const beside = await post('/v1/events', { events: [], dry_run: true });
  expect(beside.body.error).toMatchObject({ field: 'dry_run' });
});

test('schema rejections count as errors of the route, with the version that would have served', async () => {
  errors.length = 0;
  await recommend({ k: 'x' });
  await post('/v1/events', { user_id: 'u1' });
  await recommend({ k: 99 }); // from the core
  expect(errors).toEqual([
    { method: 'http_recommend', code: status.INVALID_ARGUMENT, version: '1' },
    { method: 'http_events', code: status.INVALID_ARGUMENT, version: '1' },
    { method: 'http_recommend', code: status.INVALID_ARGUMENT, version: '1' },
  ]);
});

test('events: one, then a batch with a retry in it; recorded online, the retry a duplicate; the next recommendation uses them', async () => {
  feedbackSeen.length = 0;
  const click = { user_id: 'fresh', item_id: 'd', event: 'FEEDBACK_EVENT_CLICK', timestamp_ms: 1000, event_id: 'e1' };
  const one = await post('/v1/events', click);
  expect(one.status).toBe(200);
  expect(one.body).toEqual({ recorded_online: true, duplicate: false });
  expect(one.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(one.headers['x-recsys-model']).toBe('fake-model');

  const batch = await post('/v1/events', {
    events: [
      { user_id: 'fresh', item_id: 'e', event: 'FEEDBACK_EVENT_PURCHASE', timestamp_ms: 2000, value: 9.5 },
      click,
      { user_id: 'other', item_id: 'a', event: 'FEEDBACK_EVENT_DISMISS', request_id: 'r-1' },
    ],
  });
  expect(batch.status).toBe(200);
  expect(batch.body).toEqual({
    results: [
      { recorded_online: true, duplicate: false },
      { recorded_online: true, duplicate: true },
      { recorded_online: true, duplicate: false },
    ],
  });
  expect(feedbackSeen.map((f) => [f.method, f.event.item_id, f.event.event, f.event.value])).toEqual([
    ['http_events', 'd', 'FEEDBACK_EVENT_CLICK', 0],
    ['http_events', 'e', 'FEEDBACK_EVENT_PURCHASE', 9.5],
    ['http_events', 'd', 'FEEDBACK_EVENT_CLICK', 0],
    ['http_events', 'a', 'FEEDBACK_EVENT_DISMISS', 0],
  ]);
  // Defaults filled in as the gRPC decoder fills them.
  expect(feedbackSeen.at(-1)!.event).toEqual({
    request_id: 'r-1',
    user_id: 'other',
    item_id: 'a',
    event: 'FEEDBACK_EVENT_DISMISS',
    timestamp_ms: 0,
    value: 0,
    event_id: '',
  });
  const next = await recommend({ user_id: 'fresh', k: 2 });
  expect(next.body).toMatchObject({ history_source: 'HISTORY_SOURCE_ONLINE_STORE', fallback: false });
  expect(ranker().calls.at(-1)).toEqual([4, 5]); // d then e, oldest first
});

test('a batch with one invalid event records none and names it; batches are bounded', async () => {
  const before = store.seen.size;
  const res = await post('/v1/events', {
    events: [
      { user_id: 'u1', item_id: 'a', event: 'FEEDBACK_EVENT_CLICK' },
      { user_id: 'u1', item_id: 'b', event: 'CLICK' },
    ],
  });
  expect(res.status).toBe(400);
  expect(res.body.error).toEqual({
    code: 'INVALID_ARGUMENT',
    field: 'events[1].event',
    message:
      'events[1].event must be one of FEEDBACK_EVENT_IMPRESSION, FEEDBACK_EVENT_CLICK, FEEDBACK_EVENT_ADD_TO_CART, ' +
      'FEEDBACK_EVENT_PURCHASE, FEEDBACK_EVENT_RATING, FEEDBACK_EVENT_DISMISS, got "CLICK"',
  });
  expect(store.seen.size).toBe(before);
  const event = { user_id: 'u1', item_id: 'a', event: 'FEEDBACK_EVENT_IMPRESSION' };
  const tooMany = await post('/v1/events', { events: Array.from({ length: 501 }, () => event) });
  expect(tooMany.body.error).toEqual({
    code: 'INVALID_ARGUMENT',
    field: 'events',
    message: 'events has 501 items; the limit is 500',
  });
  expect((await post('/v1/events', { events: [] })).body.error!.message).toBe('events has 0 items; the minimum is 1');
});

test('the OpenAPI document: 3.1, both POST paths, their schemas generated from the validation schemas', async () => {
  const res = await request(server.url, 'GET', '/v1/openapi.json');
  expect(res.status).toBe(200);
  const doc = res.body as unknown as OpenApi;
  expect(doc.openapi).toBe('3.1.0');
  expect(Object.keys(doc.paths)).toEqual(
    expect.arrayContaining(['/v1/recommend', '/v1/events', '/healthz', '/readyz', '/v1/openapi.json']),
  );
  const schemas = doc.components.schemas!;
  const refOf = (x: Schema | undefined) => schemas[x!.$ref!.replace('#/components/schemas/', '')];
  const op = (path: string) => doc.paths[path]!.post;
  const jsonOf = (c: Content | undefined) => c!.content['application/json']!.schema;
  expect(refOf(jsonOf(op('/v1/recommend').requestBody))).toMatchObject({
    type: 'object',
    additionalProperties: false,
    required: ['user_id', 'k'],
    properties: {
      user_id: { type: 'string', minLength: 1, maxLength: 256 },
      k: { type: 'integer', minimum: 1 },
      history: { type: 'array', maxItems: 1000, items: { $ref: '#/components/schemas/HistoryItem' } },
    },
  });
  expect(refOf(jsonOf(op('/v1/recommend').responses['200']))).toMatchObject({
    properties: {
      history_source: { enum: expect.arrayContaining(['HISTORY_SOURCE_ONLINE_STORE']) },
      online_store_degraded: { type: 'boolean' },
    },
  });
  const events = jsonOf(op('/v1/events').requestBody).oneOf!;
  expect(events.map(refOf)).toEqual([
    expect.objectContaining({ required: ['user_id', 'item_id', 'event'], additionalProperties: false }),
    expect.objectContaining({
      properties: {
        events: expect.objectContaining({ maxItems: 500, items: { $ref: '#/components/schemas/FeedbackEvent' } }),
      },
    }),
  ]);
  // Every $ref resolves.
  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g)!;
  for (const r of refs) {
    const [, kind, name] = /#\/components\/(\w+)\/([^"]+)/.exec(r)!;
    expect(doc.components[kind!]?.[name!]).toBeDefined();
  }
});

test('unknown routes 404, wrong methods 405, both as JSON errors', async () => {
  const missing = await request(server.url, 'GET', '/v1/nothing');
  expect(missing.status).toBe(404);
  expect(missing.body.error).toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('GET /v1/nothing') });
  const wrong = await request(server.url, 'GET', '/v1/recommend');
  expect(wrong.status).toBe(405);
  expect(wrong.headers.allow).toBe('POST');
  expect(wrong.headers['x-request-id']).toBeDefined();
});

test('inference that fails is a 500 INTERNAL; the next request is served', async () => {
  ranker().fail = true;
  const res = await recommend({});
  ranker().fail = false;
  expect(res.status).toBe(500);
  expect(res.body.error).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('boom: graph exploded') });
  expect((await recommend({})).status).toBe(200);
});

test('a 50/50 split applies to HTTP calls: each user sticks to the version the policy picks', async () => {
  await pool.loadVersion({ name: 'fake-model', version: '2' });
  await pool.setPolicy({ '1': 50, '2': 50 });
  const users = Array.from({ length: 60 }, (_, i) => `split-${i}`);
  const got = await Promise.all(users.map((u) => recommend({ user_id: u })));
  const versions = got.map((r) => r.body.model_version);
  expect(versions).toEqual(users.map((u) => pool.pick(u)!.version.version));
  expect(got.map((r) => r.headers['x-recsys-model-version'])).toEqual(versions);
  expect(new Set(versions)).toEqual(new Set(['1', '2']));
  await pool.setPolicy({ '1': 100 });
});

test('close drains: a request in flight is answered (its connection closed after it), then the port is closed', async () => {
  const own = await startHttpServer({ core: new RecommenderCore(pool), port: 0 });
  ranker().delayMs = 300;
  try {
    const inFlight = request(own.url, 'POST', '/v1/recommend', JSON.stringify({ user_id: 'u1', k: 2 }));
    await new Promise((r) => setTimeout(r, 100));
    const closed = own.close(5000);
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.headers.connection).toBe('close');
    await closed;
    await expect(request(own.url, 'GET', '/healthz')).rejects.toThrow(/ECONNREFUSED/);
  } finally {
    ranker().delayMs = 0;
  }
});
