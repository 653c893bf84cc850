/**
 * The request log loses nothing on kill -9 beyond its stated bound (serving/README.md): a real `recsys serve` process
 * takes Recommend and Feedback calls while its object store is unreachable (RECSYS_S3_ENDPOINT points at a closed
 * loopback port; the model comes from the local cache, warmed from the real store first), and is killed with SIGKILL
 * mid-load. Restarted on the same cache directory with the real store, it ships what the killed process sealed, on
 * start, and sets aside a corrupt spill file without stopping. Every acknowledged call must be in the object store
 * except those acknowledged in the last flush interval (plus a little for the write under way) before the kill.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { config, stackDirOf } from '../../lib/config';
import { objectStore, parseS3Uri } from '../../lib/object-store';
import { feedback, recommend, recommenderClient } from '../../serving/client';
import { defaultLoaderDeps, registryLoader } from '../../serving/model-loader';
import type { RecommenderClient } from '../../serving/proto';
import { spawnServe, type ServeProcess } from './serve-process';
import { uniqueName, useTemporal } from './stack';
import { trainTinyModel } from './training-fixture';

const FLUSH_SECONDS = 1;
/** Beyond the flush interval: the spill write of the last sealed chunk, and event-loop lag under load. */
const SLACK_MS = 500;
const LOAD_BEFORE_KILL_MS = 4_500;
const CONCURRENCY = 4;
const temporal = useTemporal();

let model: string;
let cache: string;
let prefix: string;

/** `recsys serve` as cli/bin/recsys runs it, with an environment of the test's choosing. */
function serve(env: NodeJS.ProcessEnv): ServeProcess {
  const args = ['--model', model, '--alias', 'challenger', '--port', '0', '--metrics-port', '0'];
  return spawnServe([...args, '--log-prefix', prefix, '--log-flush-seconds', `${FLUSH_SECONDS}`], env);
}

/** A loopback port nothing listens on: bound once to learn it, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  ({ model } = await trainTinyModel(temporal, 'it-durable', { epochs: 1 }));
  prefix = `s3://${config().bucket}/${uniqueName('it-log-durability')}`;
  cache = await fs.mkdtemp(path.join(os.tmpdir(), 'it-log-durability-'));
  // Warm the replica's cache (ONNX graph, dataset) from the real store: with the store away, it loads from there.
  const loader = registryLoader({ ...defaultLoaderDeps(), cacheDir: path.join(cache, 'objects') });
  const loaded = await loader.load(await loader.resolve({ name: model, alias: 'challenger' }));
  await loaded.retire();
});

afterAll(async () => {
  if (cache) await fs.rm(cache, { recursive: true, force: true });
  if (prefix) await objectStore().deletePrefix(`${prefix}/`);
});

test('kill -9 under load with the store away loses at most the last flush interval of acknowledged calls', async () => {
  const baseEnv = { ...process.env, RECSYS_CACHE: cache, RECSYS_STACK_DIR: stackDirOf() };
  const spillDir = path.join(cache, 'objects', 'serving-log-spill');
  const dead = `http://127.0.0.1:${await closedPort()}`;

  // 1. Serving with the object store unreachable, under bounded load, then SIGKILL.
  const first = serve({ ...baseEnv, RECSYS_S3_ENDPOINT: dead });
  /** Acknowledged calls: `recommend:<request_id>` or `feedback:<request_id>`, with when the answer arrived. */
  const acked: { key: string; at: number }[] = [];
  let killedAt = 0;
  let client: RecommenderClient | undefined;
  try {
    const [, address] = await first.waitFor(/Serving recsys\.v1\.Recommender on (127\.0\.0\.1:\d+)/);
    client = recommenderClient(address!);
    const c = client;
    let stop = false;
    const hardStop = Date.now() + LOAD_BEFORE_KILL_MS + 15_000; // the loop ends by itself whatever happens
    const worker = async (w: number) => {
      for (let i = 0; !stop && Date.now() < hardStop && i < 100_000; i++) {
        try {
          const res = await recommend(c, { user_id: `u-${w}-${i}`, history: [], k: 3, exclude_item_ids: [] }, 2000);
          acked.push({ key: `recommend:${res.request_id}`, at: Date.now() });
          if (i % 3 === 0) {
            await feedback(
              c,
              {
                request_id: res.request_id,
                user_id: `u-${w}-${i}`,
                item_id: res.items[0]!.item_id,
                event: 'FEEDBACK_EVENT_CLICK',
                timestamp_ms: 0,
                value: 0,
              },
              2000,
            );
            acked.push({ key: `feedback:${res.request_id}`, at: Date.now() });
          }
        } catch {
          if (stop) return; // the server is gone
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    };
    const workers = Array.from({ length: CONCURRENCY }, (_, w) => worker(w));
    await new Promise((r) => setTimeout(r, LOAD_BEFORE_KILL_MS));
    first.child.kill('SIGKILL');
    killedAt = Date.now();
    stop = true;
    await Promise.all(workers);
  } finally {
    client?.close();
    if (first.child.exitCode === null && first.child.signalCode === null) first.child.kill('SIGKILL');
  }
  await first.exited;
  expect(first.child.signalCode).toBe('SIGKILL');
  expect(first.output()).toContain('upload of'); // it really could not reach the store
  expect(await objectStore().list(`${prefix}/`)).toEqual([]);
  const spilled = (await fs.readdir(spillDir)).filter((n) => n.endsWith('.chunk'));
  expect(spilled.length).toBeGreaterThan(0);
  // A file no chunk could be, sorted after the others: set aside on restart, without stopping the shipping.
  const corrupt = '999999999999999-corrupt.chunk';
  await fs.writeFile(path.join(spillDir, corrupt), '');

  // 2. Restarted on the same cache directory with the real store: it ships what the killed process left, on start.
  const second = serve(baseEnv);
  let shippedOnStart = false;
  try {
    await second.waitFor(/Serving recsys\.v1\.Recommender on/);
    const deadline = Date.now() + 30_000;
    while (!shippedOnStart && Date.now() < deadline) {
      shippedOnStart = !(await fs.readdir(spillDir)).some((n) => n.endsWith('.chunk'));
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    second.child.kill('SIGTERM');
  }
  const killer = setTimeout(() => second.child.kill('SIGKILL'), 30_000);
  expect(await second.exited).toBe(0);
  clearTimeout(killer);

  // 3. Count: shipped = acknowledged - at most the calls of the last flush interval before the kill.
  const lines = (
    await Promise.all(
      (await objectStore().list(`${prefix}/`)).map(async (u) => {
        const kind = parseS3Uri(u).key.includes('/feedback/') ? 'feedback' : 'recommend';
        return (await objectStore().getBytes(u))!
          .toString('utf8')
          .trim()
          .split('\n')
          .map((l) => `${kind}:${(JSON.parse(l) as { request_id: string }).request_id}`);
      }),
    )
  ).flat();
  const shipped = new Set(lines);
  expect(shipped.size).toBe(lines.length); // nothing twice
  const lost = acked.filter((a) => !shipped.has(a.key));
  const windowMs = FLUSH_SECONDS * 1000 + SLACK_MS;
  const bound = acked.filter((a) => a.at >= killedAt - windowMs).length;
  console.log(
    `request log durability: ${acked.length} calls acknowledged before kill -9, ${shipped.size} records shipped ` +
      `after the restart, records lost: ${lost.length} (bound: the ${bound} acknowledged in the last ${windowMs} ms; ` +
      `the oldest lost acknowledged ${lost.length ? killedAt - Math.min(...lost.map((l) => l.at)) : 0} ms before the kill)`,
  );
  expect(acked.length).toBeGreaterThan(200);
  expect(lost.length).toBeLessThanOrEqual(bound);
  for (const l of lost) expect(l.at).toBeGreaterThanOrEqual(killedAt - windowMs);

  // Shipped while serving, not only on the way out; the corrupt file set aside, and said so.
  expect(shippedOnStart).toBe(true);
  expect(second.output()).toContain(`shipping ${spilled.length + 1} chunks left by earlier runs`);
  expect(await fs.readdir(spillDir)).toEqual([`${corrupt}.bad`]);
  expect(second.output()).toContain(`${corrupt}.bad: not a log chunk (empty file)`);
});
