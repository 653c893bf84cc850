/**
 * The serving tier against the real stack: a small two-tower model is trained and registered by continuousTraining,
 * then served from the registry over gRPC on 127.0.0.1. Checks the answers against the ONNX graph run directly and
 * the dataset's Parquet files read directly, every kind of bad input, health, the CLI client, and that versions whose
 * artefacts are corrupt are refused while the serving version keeps serving.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import * as ort from 'onnxruntime-node';
import { localDataset } from '../../lib/dataset/cache';
import { config } from '../../lib/config';
import { withTempDir } from '../../lib/files';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { objectStore } from '../../lib/object-store';
import { recommend, recommenderClient } from '../../serving/client';
import { ModelLoadError } from '../../serving/errors';
import { registryLoader } from '../../serving/model-loader';
import { ModelPool } from '../../serving/model-pool';
import { recsysV1, type RecommendRequest, type RecommenderClient } from '../../serving/proto';
import { startServer, type RunningServer } from '../../serving/server';
import type { ContinuousTrainingResult } from '../../workflows/training-api';
import { spawnServe } from './serve-process';
import { uniqueName, useTemporal } from './stack';
import { trainTinyModel } from './training-fixture';

const ROOT = path.resolve(__dirname, '..', '..');
const TOP_K = 20;
const HISTORY_LEN = 20;
const temporal = useTemporal();
const mlflow = new MlflowClient();

let model: string;
let trained: ContinuousTrainingResult;
let tags: Record<string, string>;
let slot: ModelPool;
let running: RunningServer;
let client: RecommenderClient;
/** From the dataset's Parquet files, read here independently of the server's catalogue. */
let itemIdOf: Map<number, string>;
let popularIds: string[];
let someUser: { id: string; recent: string[] };

async function readDataset(dir: string): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const rows = async (sql: string) => (await conn.runAndReadAll(sql)).getRows();
  try {
    const f = (n: string) => `'${path.join(dir, n)}'`;
    itemIdOf = new Map(
      (await rows(`SELECT item_idx::INTEGER, item_id FROM ${f('items.parquet')}`)).map(([i, id]) => [
        i as number,
        String(id),
      ]),
    );
    popularIds = (
      await rows(
        `SELECT i.item_id FROM ${f('train.parquet')} t JOIN ${f('items.parquet')} i USING (item_idx)
         GROUP BY i.item_id, t.item_idx ORDER BY count(*) DESC, t.item_idx LIMIT 10`,
      )
    ).map(([id]) => String(id));
    const [user] = await rows(`SELECT user_id FROM ${f('users.parquet')} ORDER BY user_idx LIMIT 1`);
    const recent = await rows(
      `SELECT i.item_id FROM ${f('train.parquet')} t JOIN ${f('users.parquet')} u USING (user_idx)
       JOIN ${f('items.parquet')} i USING (item_idx) WHERE u.user_id = '${String(user![0])}'
       ORDER BY t.ts DESC, t.item_idx DESC LIMIT 5`,
    );
    someUser = { id: String(user![0]), recent: recent.map(([id]) => String(id)).reverse() };
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

beforeAll(async () => {
  ({ model, trained } = await trainTinyModel(temporal, 'it-serve', { epochs: 2, history_len: HISTORY_LEN }));
  tags = tagsOf(await mlflow.getModelVersion(model, trained.registered.version));
  await readDataset(await localDataset(trained.dataset.manifestUri));

  slot = new ModelPool(registryLoader());
  // `challenger` always points at the newest version; `champion` only if it beat popularity.
  await slot.load({ name: model, alias: 'challenger' });
  running = await startServer({ slot, port: 0 });
  client = recommenderClient(running.address);
});

afterAll(async () => {
  client?.close();
  await running?.shutdown(5000);
});

const req = (r: Partial<RecommendRequest>): RecommendRequest => ({
  user_id: 'nobody',
  history: [],
  k: 10,
  exclude_item_ids: [],
  ...r,
});
const history = (ids: string[]) => ids.map((item_id, i) => ({ item_id, timestamp_ms: 1_000 * (i + 1) }));

test('serves the registered version: known items, best first, with the registry lineage', async () => {
  const hist = someUser.recent.slice(0, 3);
  const res = await recommend(client, req({ user_id: 'visitor', history: history(hist), k: 10 }));
  expect(res).toMatchObject({
    model_name: model,
    model_version: trained.registered.version,
    dataset_name: tags['recsys.dataset.name'],
    dataset_version: tags['recsys.dataset.version'],
    fallback: false,
    fallback_reason: 'FALLBACK_REASON_UNSPECIFIED',
  });
  expect(res.dataset_version).toBe(trained.dataset.version);
  expect(res.items).toHaveLength(10);
  const known = new Set(itemIdOf.values());
  for (const it of res.items) expect(known.has(it.item_id)).toBe(true);
  for (const it of res.items) expect(hist).not.toContain(it.item_id);
  const scores = res.items.map((i) => i.score);
  expect(scores).toEqual([...scores].sort((a, b) => b - a));

  // The same answer as the ONNX graph run here directly on the left-padded history.
  const idxOf = new Map([...itemIdOf].map(([i, id]) => [id, i]));
  const row = new BigInt64Array(HISTORY_LEN);
  hist.forEach((id, j) => (row[HISTORY_LEN - hist.length + j] = BigInt(idxOf.get(id)!)));
  const expected = await withTempDir('it-serve', async (dir) => {
    const file = path.join(dir, 'model.onnx');
    await objectStore().downloadFile(tags['recsys.onnx.uri']!, file);
    const session = await ort.InferenceSession.create(file);
    const out = await session.run({ history: new ort.Tensor('int64', row, [1, HISTORY_LEN]) });
    await session.release();
    return [...(out.items!.data as BigInt64Array)]
      .map((i) => itemIdOf.get(Number(i))!)
      .filter((id) => !hist.includes(id))
      .slice(0, 10);
  });
  expect(res.items.map((i) => i.item_id)).toEqual(expected);
});

test('excluded items are not returned', async () => {
  const base = await recommend(client, req({ history: history(someUser.recent), k: 5 }));
  const drop = base.items.slice(0, 2).map((i) => i.item_id);
  const res = await recommend(client, req({ history: history(someUser.recent), k: 5, exclude_item_ids: drop }));
  // The rest move up in the same order.
  expect(res.items.slice(0, 3)).toEqual(base.items.slice(2));
  for (const id of drop) expect(res.items.map((i) => i.item_id)).not.toContain(id);
});

test('a known user without history in the request is ranked on their dataset history', async () => {
  const res = await recommend(client, req({ user_id: someUser.id, k: 5 }));
  expect(res.fallback).toBe(false);
  for (const id of someUser.recent) expect(res.items.map((i) => i.item_id)).not.toContain(id);
});

test('unknown user without history, or with only unknown items: the most popular items, marked as fallback', async () => {
  const cold = await recommend(client, req({ user_id: uniqueName('stranger'), k: 10 }));
  expect(cold).toMatchObject({
    fallback: true,
    fallback_reason: 'FALLBACK_REASON_NO_HISTORY',
    model_version: trained.registered.version,
  });
  expect(cold.items.map((i) => i.item_id)).toEqual(popularIds);
  const unknown = await recommend(client, req({ history: history(['no-such-item', 'nor-this']), k: 3 }));
  expect(unknown).toMatchObject({ fallback: true, fallback_reason: 'FALLBACK_REASON_NO_KNOWN_ITEMS' });
  expect(unknown.items.map((i) => i.item_id)).toEqual(popularIds.slice(0, 3));
});

test.each<[string, Partial<RecommendRequest>, string]>([
  ['missing user_id', { user_id: '' }, 'user_id is required'],
  ['k = 0', { k: 0 }, `k must be between 1 and ${TOP_K} (the model's top_k), got 0`],
  ['k above top_k', { k: TOP_K + 1 }, `k must be between 1 and ${TOP_K} (the model's top_k), got ${TOP_K + 1}`],
  [
    'history too long',
    { history: history(Array(1001).fill('x') as string[]) },
    'history has 1001 items; the limit is 1000',
  ],
  ['history item without id', { history: history(['a', '']) }, 'history[1].item_id is required'],
  [
    'too many excludes',
    { exclude_item_ids: Array(1001).fill('x') as string[] },
    'exclude_item_ids has 1001 items; the limit is 1000',
  ],
])('INVALID_ARGUMENT: %s', async (_, change, details) => {
  await expect(recommend(client, req(change))).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details });
});

test('INVALID_ARGUMENT: a field the contract does not define, named by number and message', async () => {
  // A client built against another .proto: a valid request plus field 15 (varint 1) the server's HistoryItem lacks.
  const valid = recsysV1().Recommender.service.Recommend.requestSerialize(req({ history: history(someUser.recent) }));
  const raw = new grpc.Client(running.address, grpc.credentials.createInsecure());
  const call = (body: Buffer) =>
    new Promise<Buffer>((resolve, reject) =>
      raw.makeUnaryRequest(
        '/recsys.v1.Recommender/Recommend',
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        { deadline: Date.now() + 10_000 },
        (err, res) => (err ? reject(err) : resolve(res!)),
      ),
    );
  try {
    await expect(call(valid)).resolves.toBeInstanceOf(Buffer);
    await expect(call(Buffer.concat([valid, Buffer.of(15 << 3, 1)]))).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'unknown field 15 in recsys.v1.RecommendRequest',
    });
  } finally {
    raw.close();
  }
});

test('health reports SERVING', async () => {
  const def = protoLoader.loadSync('health/v1/health.proto', {
    includeDirs: [path.resolve(healthProto, '..', '..', '..')],
    keepCase: true,
    enums: String,
  });
  const Health = (
    grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    }
  ).grpc.health.v1.Health;
  const health = new Health(running.address, grpc.credentials.createInsecure());
  const status = await new Promise<string>((resolve, reject) =>
    (health as unknown as { Check: (r: object, cb: (e: Error | null, r?: { status: string }) => void) => void }).Check(
      { service: 'recsys.v1.Recommender' },
      (err, res) => (err ? reject(err) : resolve(res!.status)),
    ),
  );
  health.close();
  expect(status).toBe('SERVING');
});

test('`recsys recommend` prints the items, scores and version', async () => {
  const { stdout } = await promisify(execFile)(
    path.join(ROOT, 'cli', 'bin', 'recsys'),
    ['recommend', '--user', someUser.id, '--k', '3', '--address', running.address],
    { cwd: ROOT },
  );
  expect(stdout).toMatch(/^rank\s+item\s+score\n/);
  expect(stdout.split('\n').filter((l) => /^\d+\s+\S+\s+-?\d/.test(l))).toHaveLength(3);
  expect(stdout).toContain(`Model:     ${model} v${trained.registered.version}`);
  expect(stdout).toContain(`Dataset:   ${trained.dataset.name}@${trained.dataset.version}`);
  expect(stdout).toContain('Fallback:  no');
});

describe('corrupt artefacts are refused and the serving version keeps serving', () => {
  /** Registers a new version of the model whose serving tags are the trained version's, with some changed. */
  async function versionWith(changes: Record<string, string>): Promise<string> {
    const run = await mlflow.getRun(trained.registered.mlflowRunId);
    const v = await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, {
      ...tags,
      ...changes,
    });
    return v.version;
  }

  async function expectRefused(version: string, stage: string, message: string | RegExp): Promise<void> {
    const err = await slot.load({ name: model, version }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err).toMatchObject({ stage });
    expect((err as Error).message).toMatch(message);
    expect(slot.lastError?.model).toBe(`models:/${model}/${version}`);
    const res = await recommend(client, req({ history: history(someUser.recent) }));
    expect(res).toMatchObject({ model_version: trained.registered.version, fallback: false });
  }

  test('a checksum that does not match the artefact', async () => {
    const wrong = createHash('sha256').update('something else').digest('hex');
    const v = await versionWith({ 'recsys.onnx.sha256': wrong });
    await expectRefused(
      v,
      'checksum',
      `sha256 of ${tags['recsys.onnx.uri']} is ${tags['recsys.onnx.sha256']}, but the registry tag recsys.onnx.sha256 says ${wrong}`,
    );
  });

  test('garbage bytes with a matching checksum', async () => {
    const bytes = randomBytes(4096);
    const uri = `s3://${config().bucket}/it-serving/${model}/garbage.onnx`;
    await objectStore().putBytes(uri, bytes);
    const v = await versionWith({
      'recsys.onnx.uri': uri,
      'recsys.onnx.sha256': createHash('sha256').update(bytes).digest('hex'),
    });
    await expectRefused(v, 'session', /onnxruntime cannot open the graph/);
  });

  test('a graph whose shape disagrees with its tags', async () => {
    const v = await versionWith({ 'recsys.onnx.history_len': '7' });
    await expectRefused(
      v,
      'signature',
      `input 'history' has length ${HISTORY_LEN}, but the tag recsys.onnx.history_len says 7`,
    );
  });

  test('an artefact that is missing from the object store', async () => {
    // A checksum nothing has, so the local cache (keyed by checksum) cannot stand in for the missing object.
    const v = await versionWith({
      'recsys.onnx.uri': `s3://${config().bucket}/it-serving/${model}/missing.onnx`,
      'recsys.onnx.sha256': randomBytes(32).toString('hex'),
    });
    await expectRefused(v, 'download', /missing\.onnx/);
  });

  test('a good version is then swapped in', async () => {
    const v = await versionWith({});
    expect(await slot.load({ name: model, version: v })).toMatchObject({
      swapped: true,
      previous: `models:/${model}/${trained.registered.version}`,
    });
    const res = await recommend(client, req({ history: history(someUser.recent) }));
    expect(res).toMatchObject({ model_version: v, dataset_version: trained.dataset.version });
  });
});

test('`recsys serve` serves an alias on 127.0.0.1, survives a bad reload on SIGHUP and drains on SIGTERM', async () => {
  const alias = 'it-serve';
  await mlflow.setAlias(model, alias, trained.registered.version);
  // Node itself with tsx's loader, as cli/bin/recsys runs it. Free ports, and logs under this test's own prefix.
  const logPrefix = `s3://${config().bucket}/test-serving-logs/${model}`;
  const { child, exited, output, waitFor } = spawnServe([
    '--model',
    model,
    '--alias',
    alias,
    '--port',
    '0',
    '--metrics-port',
    '0',
    '--log-prefix',
    logPrefix,
  ]);
  let cli: RecommenderClient | undefined;
  try {
    const [, address] = await waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/);
    cli = recommenderClient(address!);
    expect((await recommend(cli, req({ history: history(someUser.recent) }))).model_version).toBe(
      trained.registered.version,
    );

    // The alias moves to a version whose artefact does not match its checksum: the reload is refused.
    const run = await mlflow.getRun(trained.registered.mlflowRunId);
    const bad = await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, {
      ...tags,
      'recsys.onnx.sha256': createHash('sha256').update('not the model').digest('hex'),
    });
    await mlflow.setAlias(model, alias, bad.version);
    child.kill('SIGHUP');
    await waitFor(/Reload failed, still serving models:\/\S+\/\d+: cannot load models:\/\S+: checksum: /);
    expect((await recommend(cli, req({ history: history(someUser.recent) }))).model_version).toBe(
      trained.registered.version,
    );
  } finally {
    cli?.close();
    child.kill('SIGTERM');
  }
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000); // never leave a server behind
  expect(await exited).toBe(0);
  clearTimeout(killer);
  expect(output()).toContain('SIGTERM: draining in-flight calls');
  expect(output()).toMatch(/Stopped\n$/);
});
