/**
 * Request and feedback logs and metrics against the real stack: a small model trained and registered by
 * continuousTraining is served over gRPC with the request log shipping to the real object store; after N Recommend
 * and M Feedback calls and a graceful shutdown, exactly N + M records are read back from the documented layout (the
 * environment partition `adhoc` by default, `--environment` of `recsys serve` otherwise), field by field (with the
 * history's item ids), and /metrics (scraped over HTTP before the shutdown) counts N requests for the served version.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { config } from '../../lib/config';
import { ObjectStore, objectStore, parseS3Uri } from '../../lib/object-store';
import { feedback, recommend, recommenderClient } from '../../serving/client';
import { telemetryHooks } from '../../serving/log-hooks';
import type { FeedbackLogRecord, RecommendLogRecord } from '../../serving/log-records';
import { objectStoreUploader } from '../../serving/log-uploader';
import { ServingMetrics } from '../../serving/metrics';
import { startMetricsServer, type MetricsServer } from '../../serving/metrics-server';
import { registryLoader } from '../../serving/model-loader';
import { ModelPool } from '../../serving/model-pool';
import type { FeedbackRequest, RecommendResponse__Output, RecommenderClient } from '../../serving/proto';
import { RequestLog } from '../../serving/request-log';
import { startServer, type RunningServer } from '../../serving/server';
import type { ContinuousTrainingResult } from '../../workflows/training-api';
import { spawnServe } from './serve-process';
import { uniqueName, useTemporal } from './stack';
import { trainTinyModel } from './training-fixture';

const N = 23;
const M = 9;
const temporal = useTemporal();

let model: string;
let trained: ContinuousTrainingResult;
let prefix: string;
let spillDir: string;
let slot: ModelPool;
let log: RequestLog;
let metricsServer: MetricsServer;
let running: RunningServer;
let client: RecommenderClient;

beforeAll(async () => {
  ({ model, trained } = await trainTinyModel(temporal, 'it-logs', { epochs: 1 }));

  prefix = `s3://${config().bucket}/${uniqueName('it-serving-logs')}`;
  spillDir = await fs.mkdtemp(path.join(os.tmpdir(), 'it-serving-logs-'));
  slot = new ModelPool(registryLoader());
  await slot.load({ name: model, alias: 'challenger' });
  const metrics = new ServingMetrics();
  // Small batches, so that the records span several chunks and both the size trigger and the final flush run.
  log = new RequestLog({ uploader: objectStoreUploader(objectStore(), prefix), spillDir, batchRecords: 5 });
  await log.start();
  metricsServer = await startMetricsServer(metrics, 0);
  running = await startServer({
    slot,
    port: 0,
    hooks: telemetryHooks({ slot, log, metrics }),
    closeAfterDrain: [log, metricsServer],
  });
  client = recommenderClient(running.address);
});

afterAll(async () => {
  client?.close();
  await running?.shutdown(5000);
  if (spillDir) await fs.rm(spillDir, { recursive: true, force: true });
  if (prefix) await objectStore().deletePrefix(`${prefix}/`);
});

test('every Recommend and Feedback is in the object store after a graceful shutdown; /metrics counts them', async () => {
  const catalog = slot.active!.catalog;
  const known = [1, 2, 3].map((i) => catalog.idOf(i)!);
  const served: RecommendResponse__Output[] = [];
  const sent: { user: string; historyLen: number; historyItems: string[] }[] = [];
  for (let i = 0; i < N; i++) {
    // Every third request is a stranger without history: the popularity fallback.
    const cold = i % 3 === 0;
    const history = cold ? [] : known.slice(0, 1 + (i % 3)).map((item_id, j) => ({ item_id, timestamp_ms: j + 1 }));
    const user = cold ? `stranger-${i}` : `visitor-${i}`;
    served.push(await recommend(client, { user_id: user, history, k: 5, exclude_item_ids: [] }));
    sent.push({ user, historyLen: history.length, historyItems: history.map((h) => h.item_id) });
  }
  const feedbacks: FeedbackRequest[] = [];
  for (let i = 0; i < M; i++) {
    const f: FeedbackRequest = {
      request_id: served[i]!.request_id,
      user_id: sent[i]!.user,
      item_id: served[i]!.items[0]!.item_id,
      event: i % 2 ? 'FEEDBACK_EVENT_PURCHASE' : 'FEEDBACK_EVENT_CLICK',
      timestamp_ms: 0,
      value: i,
      event_id: '',
    };
    await feedback(client, f);
    feedbacks.push(f);
  }

  const version = trained.registered.version;
  const scraped = await (await fetch(metricsServer.url)).text();
  expect(scraped).toContain(`recsys_requests_total{method="Recommend",model="${model}",version="${version}"} ${N}`);
  expect(scraped).toContain(`recsys_requests_total{method="Feedback",model="${model}",version="${version}"} ${M}`);
  expect(scraped).toContain(
    `recsys_request_duration_seconds_count{method="Recommend",model="${model}",version="${version}"} ${N}`,
  );
  const fallbacks = served.filter((r) => r.fallback).length;
  expect(scraped).toContain(
    `recsys_fallbacks_total{model="${model}",version="${version}",reason="FALLBACK_REASON_NO_HISTORY"} ${fallbacks}`,
  );

  await running.shutdown(5000);
  expect(log.stats).toMatchObject({ recordsShipped: N + M, buffered: 0, chunksInMemory: 0, chunksSpilled: 0 });

  const uris = await objectStore().list(`${prefix}/`);
  const layout = new RegExp(
    `^${prefix}/(recommend|feedback)/model=${model}/env=adhoc/date=\\d{4}-\\d{2}-\\d{2}/hour=\\d{2}/${log.serverId}-\\d{8}\\.jsonl$`,
  );
  for (const uri of uris) expect(uri).toMatch(layout);
  expect(new Set(uris).size).toBe(uris.length);
  /** Each record with the key of the chunk it was read from. */
  const read = async (kind: string) =>
    (
      await Promise.all(
        uris
          .filter((u) => parseS3Uri(u).key.includes(`/${kind}/`))
          .map(async (u) =>
            (await objectStore().getBytes(u))!
              .toString('utf8')
              .trim()
              .split('\n')
              .map((line) => ({ uri: u, ...(JSON.parse(line) as object) })),
          ),
      )
    ).flat();
  type Read<T> = T & { time: string; uri: string };
  const recs = (await read('recommend')) as Read<RecommendLogRecord>[];
  const fbs = (await read('feedback')) as Read<FeedbackLogRecord>[];
  expect(recs.length + fbs.length).toBe(N + M);
  expect(recs).toHaveLength(N);
  expect(fbs).toHaveLength(M);

  const byId = new Map(recs.map((r) => [r.request_id, r]));
  served.forEach((res, i) => {
    const r = byId.get(res.request_id)!;
    expect(r).toMatchObject({
      user_id: sent[i]!.user,
      history_len: sent[i]!.historyLen,
      history_items: sent[i]!.historyItems,
      items: res.items.map((it) => ({ item_id: it.item_id, score: it.score })),
      model_name: model,
      model_version: version,
      dataset_name: trained.dataset.name,
      dataset_version: trained.dataset.version,
      fallback: res.fallback,
      fallback_reason: res.fallback_reason,
    });
    expect(r.latency_ms).toBeGreaterThan(0);
    expect(r.latency_ms).toBeLessThan(5000);
    expect(new Date(r.time).getTime()).toBe(r.time_ms);
    const iso = new Date(r.time_ms).toISOString();
    expect(r.uri).toContain(`/recommend/model=${model}/env=adhoc/date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}/`);
  });
  const fbById = new Map(fbs.map((f) => [`${f.request_id}/${f.value}`, f]));
  for (const f of feedbacks) {
    const r = fbById.get(`${f.request_id}/${f.value}`)!;
    expect(r).toMatchObject({
      user_id: f.user_id,
      item_id: f.item_id,
      event: f.event,
      model_name: model,
      model_version: version,
    });
    expect(r.event_time_ms).toBe(r.time_ms); // timestamp 0: when received
    const iso = new Date(r.time_ms).toISOString();
    expect(r.uri).toContain(`/feedback/model=${model}/env=adhoc/date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}/`);
  }
});

test('`recsys serve` serves /metrics on --metrics-port and ships its request log under --environment on SIGTERM', async () => {
  const cliPrefix = `${prefix}-cli`;
  const { child, exited, output, waitFor } = spawnServe(
    ['--model', model, '--alias', 'challenger', '--port', '0', '--metrics-port', '0', '--log-prefix', cliPrefix].concat(
      [
        '--log-flush-seconds',
        '600', // nothing ships on the timer: what arrives is the shutdown's flush
        '--environment',
        'it-env',
      ],
    ),
  );
  let cli: RecommenderClient | undefined;
  try {
    const [, address] = await waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/);
    const [, url] = await waitFor(/Metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/);
    cli = recommenderClient(address!);
    for (let i = 0; i < 4; i++) await recommend(cli, { user_id: `cli-${i}`, history: [], k: 3, exclude_item_ids: [] });
    await feedback(cli, {
      request_id: '',
      user_id: 'cli-0',
      item_id: slot.active?.catalog.idOf(1) ?? 'x',
      event: 'FEEDBACK_EVENT_CLICK',
      timestamp_ms: 0,
      value: 0,
    });
    const text = await (await fetch(url!)).text();
    expect(text).toContain(
      `recsys_requests_total{method="Recommend",model="${model}",version="${trained.registered.version}"} 4`,
    );
    expect(text).toContain('process_cpu_seconds_total');
  } finally {
    cli?.close();
    child.kill('SIGTERM');
  }
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000); // never leave a server behind
  expect(await exited).toBe(0);
  clearTimeout(killer);
  expect(output()).toContain('Request log: 5 records shipped\nStopped\n');
  const uris = await objectStore().list(`${cliPrefix}/`);
  const lines = await Promise.all(
    uris.map(async (u) => (await objectStore().getBytes(u))!.toString('utf8').trim().split('\n')),
  );
  expect(lines.flat()).toHaveLength(5);
  expect(uris.filter((u) => u.includes('/feedback/'))).toHaveLength(1);
  expect(uris.every((u) => u.includes(`/model=${model}/env=it-env/date=`))).toBe(true);
  await objectStore().deletePrefix(`${cliPrefix}/`);
});

test('with the object store unreachable, records spill to disk and the next log on that directory ships them all', async () => {
  const outagePrefix = `${prefix}-outage`;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'it-serving-logs-outage-'));
  try {
    // Nothing listens on port 1: every upload fails the way a store that went away does.
    const gone = new ObjectStore({ ...config(), s3Endpoint: 'http://127.0.0.1:1' });
    const first = new RequestLog({
      uploader: objectStoreUploader(gone, outagePrefix),
      spillDir: dir,
      batchRecords: 4,
      maxChunksInMemory: 1,
      onError: () => undefined,
    });
    await first.start();
    const entry = (i: number) => ({
      kind: 'feedback' as const,
      record: {
        time_ms: Date.now(),
        request_id: `outage-${i}`,
        user_id: 'u',
        item_id: 'i',
        event: 'FEEDBACK_EVENT_CLICK' as const,
        event_time_ms: 0,
        value: i,
        model_name: model,
        model_version: '1',
      },
    });
    for (let i = 0; i < 10; i++) {
      first.append(entry(i));
      if (i % 4 === 3) await first.flush(); // a chunk per batch, as under steady traffic
    }
    await first.flush();
    expect(first.stats.chunksSpilled).toBeGreaterThan(0); // the bound on memory held while the store was away
    const left = await first.close(500);
    expect(left).toMatchObject({ recordsShipped: 0, buffered: 0, chunksInMemory: 0 });
    expect(await objectStore().list(`${outagePrefix}/`)).toEqual([]);

    const second = new RequestLog({ uploader: objectStoreUploader(objectStore(), outagePrefix), spillDir: dir });
    await second.start();
    expect(await second.close()).toMatchObject({ recordsShipped: 10, chunksSpilled: 0 });
    const uris = await objectStore().list(`${outagePrefix}/`);
    expect(uris.every((u) => u.includes(`/${first.serverId}-`))).toBe(true); // the keys sealed by the first
    const ids = (
      await Promise.all(uris.map(async (u) => (await objectStore().getBytes(u))!.toString('utf8').trim().split('\n')))
    )
      .flat()
      .map((l) => (JSON.parse(l) as { request_id: string }).request_id);
    expect(ids.sort()).toEqual([...Array(10).keys()].map((i) => `outage-${i}`).sort());
    await objectStore().deletePrefix(`${outagePrefix}/`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
