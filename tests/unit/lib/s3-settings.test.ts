/**
 * S3 connection settings (lib/s3-settings.ts) reach the S3 client the object store builds: with RECSYS_S3_ENDPOINT=aws
 * the SDK addresses AWS virtual-hosted style (the request is captured in the client's own middleware stack, after
 * signing, and never sent), and with a custom endpoint it addresses path-style (a local HTTP server started here on
 * 127.0.0.1 records the request). Credentials: static keys when set, the SDK's default chain (no `credentials`
 * passed) when not, the local stack's keys for a custom endpoint.
 */
import http from 'node:http';
import type net from 'node:net';
import { loadConfig } from '../../../lib/config';
import { ObjectStore, s3ClientConfig } from '../../../lib/object-store';
import { loadS3Settings } from '../../../lib/s3-settings';

type Middleware = Parameters<ObjectStore['client']['middlewareStack']['addRelativeTo']>[0];

interface Captured {
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  headers: Record<string, string>;
}

/** The request the store's client would send, taken from its middleware stack after signing; nothing is sent. */
async function capturedRequest(store: ObjectStore, uri: string): Promise<Captured> {
  let captured: Captured | undefined;
  const capture: Middleware = () => (args: { request: unknown }) => {
    captured = args.request as Captured;
    return Promise.resolve({ output: { $metadata: {} }, response: {} });
  };
  store.client.middlewareStack.addRelativeTo(capture, {
    name: 'captureRequest',
    relation: 'after',
    toMiddleware: 'httpSigningMiddleware',
  });
  expect(await store.exists(uri)).toBe(true);
  return captured!;
}

const AWS = { RECSYS_S3_ENDPOINT: 'aws', AWS_REGION: 'eu-west-1' };
const KEYS = { AWS_ACCESS_KEY_ID: 'AKIDRECSYSTEST', AWS_SECRET_ACCESS_KEY: 'test-secret' };

describe('RECSYS_S3_ENDPOINT=aws: the AWS SDK resolves the endpoint', () => {
  test('virtual-hosted addressing: https://<bucket>.s3.<region>.amazonaws.com/<key>, signed for that region', async () => {
    const store = new ObjectStore(loadConfig({ ...AWS, ...KEYS }));
    const req = await capturedRequest(store, 's3://recsys-prod/datasets/ml-100k/v1/manifest.json');
    expect(req.protocol).toBe('https:');
    expect(req.hostname).toBe('recsys-prod.s3.eu-west-1.amazonaws.com');
    expect(req.path).toBe('/datasets/ml-100k/v1/manifest.json');
    expect(req.headers.authorization).toMatch(/Credential=AKIDRECSYSTEST\/\d{8}\/eu-west-1\/s3\/aws4_request/);
  });

  test('without AWS_ACCESS_KEY_ID no static keys are passed: the SDK uses its default credential chain', () => {
    const cfg = loadConfig(AWS);
    expect(cfg.s3Credentials).toBeUndefined();
    const options = s3ClientConfig(cfg);
    expect('credentials' in options).toBe(false);
    expect(options).toMatchObject({ region: 'eu-west-1', forcePathStyle: false });
    expect('endpoint' in options).toBe(false);
  });

  test('without AWS_REGION the region is left to the SDK too (its shared config file)', () => {
    const options = s3ClientConfig(loadConfig({ RECSYS_S3_ENDPOINT: 'aws' }));
    expect('region' in options).toBe(false);
  });

  test('AWS_SESSION_TOKEN rides along with static keys', () => {
    expect(loadS3Settings({ ...AWS, ...KEYS, AWS_SESSION_TOKEN: 'tok' }).credentials).toEqual({
      accessKeyId: 'AKIDRECSYSTEST',
      secretAccessKey: 'test-secret',
      sessionToken: 'tok',
    });
  });
});

describe('a custom endpoint: path-style', () => {
  const seen: { method: string; url: string; host: string; authorization: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      host: req.headers.host ?? '',
      authorization: req.headers.authorization ?? '',
    });
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  });
  let endpoint: string;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(() => {
    seen.length = 0;
  });

  test('<endpoint>/<bucket>/<key>, signed with the configured keys', async () => {
    const store = new ObjectStore(loadConfig({ RECSYS_S3_ENDPOINT: endpoint, AWS_REGION: 'RegionOne', ...KEYS }));
    expect(await store.exists('s3://recsys-prod/datasets/ml-100k/v1/manifest.json')).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'HEAD',
      url: '/recsys-prod/datasets/ml-100k/v1/manifest.json',
      host: new URL(endpoint).host,
    });
    expect(seen[0]!.authorization).toMatch(/Credential=AKIDRECSYSTEST\/\d{8}\/RegionOne\/s3\/aws4_request/);
  });

  test('nothing else set: the local stack keys and region, as before', async () => {
    const store = new ObjectStore(loadConfig({ RECSYS_S3_ENDPOINT: endpoint }));
    await store.exists('s3://recsys/x');
    expect(seen[0]!.url).toBe('/recsys/x');
    expect(seen[0]!.authorization).toMatch(/Credential=recsys\/\d{8}\/us-east-1\/s3\/aws4_request/);
  });
});

describe('defaults and errors', () => {
  test('nothing set: the local versitygw, path-style, the local keys', () => {
    const cfg = loadConfig({});
    expect(s3ClientConfig(cfg)).toMatchObject({
      endpoint: 'http://127.0.0.1:7070',
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'recsys', secretAccessKey: 'recsys-local-secret' },
    });
    expect(loadS3Settings({ RECSYS_S3_ENDPOINT: '' }).endpoint).toBe('http://127.0.0.1:7070');
  });

  test('an endpoint that is neither a URL nor `aws`, or half a key pair, is an error naming the variable', () => {
    expect(() => loadS3Settings({ RECSYS_S3_ENDPOINT: 'AWS' })).toThrow(
      `environment variable RECSYS_S3_ENDPOINT must be an http(s) URL or 'aws', got "AWS"`,
    );
    expect(() => loadS3Settings({ RECSYS_S3_ENDPOINT: 's3.example:9000' })).toThrow('got "s3.example:9000"');
    expect(() => loadS3Settings({ ...AWS, AWS_ACCESS_KEY_ID: 'AKID' })).toThrow(
      'environment variable AWS_SECRET_ACCESS_KEY is not set but AWS_ACCESS_KEY_ID is: set both, or neither',
    );
  });
});
