/**
 * The object store client's own logic against local servers started here: deadlines on a store that hangs, and
 * downloads that stay whole when two of them write the same file at once. Not a stand-in for versitygw: the
 * integration tests cover the real store.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../../lib/config';
import { ObjectStore, ObjectStoreTimeoutError } from '../../../lib/object-store';

const listen = async (server: net.Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
};

const storeAt = (port: number, timeoutMs = 300) =>
  new ObjectStore({
    ...loadConfig(),
    s3Endpoint: `http://127.0.0.1:${port}`,
    s3ConnectTimeoutMs: timeoutMs,
    s3RequestTimeoutMs: timeoutMs,
    s3IdleTimeoutMs: timeoutMs,
  });

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-object-store-'));
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

describe('deadlines', () => {
  const sockets = new Set<net.Socket>();
  // Accepts connections and never answers: a store that hangs.
  const hung = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  let port: number;
  beforeAll(async () => {
    port = await listen(hung);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => hung.close(resolve));
  });
  afterEach(() => jest.restoreAllMocks());

  test('a store that accepts and never answers fails the request within its deadline, naming it', async () => {
    const started = Date.now();
    const err = (await storeAt(port)
      .getBytes('s3://recsys/datasets/x/manifest.json')
      .catch((e: unknown) => e)) as Error;
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(ObjectStoreTimeoutError);
    expect(err.message).toContain(
      `object store http://127.0.0.1:${port}: GetObject s3://recsys/datasets/x/manifest.json`,
    );
    expect(err.message).toContain('timed out');
    // The SDK retries a timeout (3 attempts by default): a few deadlines, never an open-ended wait.
    expect(elapsed).toBeLessThan(5_000);
  }, 15_000);

  test('so does an upload and a listing', async () => {
    // The SDK warns that it cannot retry a streamed upload body; the failure itself is what is checked here.
    jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const store = storeAt(port);
    const file = path.join(dir, 'up.bin');
    await fs.writeFile(file, 'x');
    await expect(store.putFile('s3://recsys/a/up.bin', file)).rejects.toThrow(/PutObject s3:\/\/recsys\/a\/up.bin/);
    await expect(store.list('s3://recsys/a/')).rejects.toThrow(ObjectStoreTimeoutError);
  }, 15_000);
});

describe('downloads', () => {
  const body = Buffer.alloc(256 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31) % 251;
  let stallAfter: number | undefined;
  const open = new Set<net.Socket>();
  // Serves every GET with `body`, in slow pieces so that concurrent downloads overlap.
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': body.length, etag: '"e"', 'content-type': 'application/octet-stream' });
    let at = 0;
    const piece = 16 * 1024;
    const next = () => {
      if (stallAfter !== undefined && at >= stallAfter) return; // a store that stops mid-transfer
      if (at >= body.length) return void res.end();
      res.write(body.subarray(at, at + piece));
      at += piece;
      setTimeout(next, 5);
    };
    next();
  });
  server.on('connection', (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  let port: number;
  beforeAll(async () => {
    port = await listen(server);
  });
  afterAll(async () => {
    for (const s of open) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  test('two downloads of one object to one file at once both succeed, and the file is whole', async () => {
    const store = storeAt(port, 5_000);
    const file = path.join(dir, 'same', 'train.parquet');
    const seen: number[] = [];
    await Promise.all([
      store.downloadFile('s3://recsys/d/train.parquet', file, (n) => seen.push(n)),
      store.downloadFile('s3://recsys/d/train.parquet', file),
    ]);
    expect((await fs.readFile(file)).equals(body)).toBe(true);
    expect(seen.at(-1)).toBe(body.length);
    expect(await fs.readdir(path.dirname(file))).toEqual(['train.parquet']);
  });

  test('a transfer that stalls midway fails on the idle deadline and leaves no file behind', async () => {
    stallAfter = 64 * 1024;
    try {
      const file = path.join(dir, 'stalled', 'train.parquet');
      const err = (await storeAt(port, 300)
        .downloadFile('s3://recsys/d/train.parquet', file)
        .catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(ObjectStoreTimeoutError);
      expect(err.message).toContain('GetObject s3://recsys/d/train.parquet');
      expect(await fs.readdir(path.dirname(file))).toEqual([]);
    } finally {
      stallAfter = undefined;
    }
  }, 15_000);
});
