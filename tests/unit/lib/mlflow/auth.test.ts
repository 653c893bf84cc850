/**
 * MLflow credentials (lib/mlflow/auth.ts) reach the server: a local HTTP server started here (127.0.0.1) records the
 * Authorization header of REST calls and of artefact uploads through the proxy, for the variables MLflow's own
 * clients read.
 */
import http from 'node:http';
import type net from 'node:net';
import { loadConfig } from '../../../../lib/config';
import { loadMlflowAuth } from '../../../../lib/mlflow/auth';
import { MlflowClient, MlflowError } from '../../../../lib/mlflow/client';
import type { MlflowRun } from '../../../../lib/mlflow/schemas';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
}
const seen: Seen[] = [];
let status = 200;
const server = http.createServer((req, res) => {
  seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
  req.resume();
  req.on('end', () => {
    res.writeHead(status, { 'content-type': 'application/json' });
    const body = req.url?.includes('registered-models/get')
      ? { registered_model: { name: 'm' } }
      : status === 200
        ? {}
        : { error_code: 'UNAUTHENTICATED', message: 'You are not authenticated.' };
    res.end(JSON.stringify(body));
  });
});
let base: string;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});
afterAll(() => new Promise((resolve) => server.close(resolve)));
beforeEach(() => {
  seen.length = 0;
  status = 200;
});

const run = { info: { run_id: 'r1', artifact_uri: 'mlflow-artifacts:/1/r1/artifacts' } } as unknown as MlflowRun;

/** One REST call and one artefact upload with the auth from `env`; the Authorization headers the server saw. */
async function headersFor(env: NodeJS.ProcessEnv): Promise<(string | undefined)[]> {
  const client = new MlflowClient(base, { auth: loadMlflowAuth(env), timeoutMs: 5_000, uploadTimeoutMs: 5_000 });
  await client.getRegisteredModel('m');
  await client.uploadArtifact(run, 'model/model.onnx', new Uint8Array([1, 2, 3]));
  expect(seen.map((s) => s.method)).toEqual(['GET', 'PUT']);
  expect(seen[1]!.url).toBe('/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/model/model.onnx');
  return seen.map((s) => s.authorization);
}

test('MLFLOW_TRACKING_TOKEN: `Authorization: Bearer <token>` on REST calls and artefact uploads', async () => {
  expect(await headersFor({ MLFLOW_TRACKING_TOKEN: 'tok-1' })).toEqual(['Bearer tok-1', 'Bearer tok-1']);
});

test('MLFLOW_TRACKING_USERNAME and _PASSWORD: `Authorization: Basic base64(user:password)`, winning over a token', async () => {
  const basic = `Basic ${Buffer.from('alice:s3cret:x').toString('base64')}`;
  const env = { MLFLOW_TRACKING_USERNAME: 'alice', MLFLOW_TRACKING_PASSWORD: 's3cret:x', MLFLOW_TRACKING_TOKEN: 't' };
  expect(await headersFor(env)).toEqual([basic, basic]);
});

test('nothing set (the local stack): no Authorization header, and the configuration says none', async () => {
  expect(await headersFor({})).toEqual([undefined, undefined]);
  expect(loadConfig({}).mlflowAuth).toEqual({ kind: 'none' });
});

test('a client built without options (as activities build it) sends the credentials of the environment', async () => {
  const saved = process.env.MLFLOW_TRACKING_TOKEN;
  process.env.MLFLOW_TRACKING_TOKEN = 'tok-env';
  try {
    // A fresh module registry: config() reads the environment once per process, here once for this copy.
    let Fresh: typeof MlflowClient | undefined;
    jest.isolateModules(() => {
      Fresh = jest.requireActual<{ MlflowClient: typeof MlflowClient }>('../../../../lib/mlflow/client').MlflowClient;
    });
    expect(Fresh).not.toBe(MlflowClient);
    await new Fresh!(base).getRegisteredModel('m');
  } finally {
    if (saved === undefined) delete process.env.MLFLOW_TRACKING_TOKEN;
    else process.env.MLFLOW_TRACKING_TOKEN = saved;
  }
  expect(seen.map((s) => s.authorization)).toEqual(['Bearer tok-env']);
});

test('a refusal says which credentials were sent, never the secret', async () => {
  status = 401;
  const err = (await new MlflowClient(base, { auth: loadMlflowAuth({ MLFLOW_TRACKING_TOKEN: 'tok-secret' }) })
    .getRun('r1')
    .catch((e: unknown) => e)) as MlflowError;
  expect(err).toBeInstanceOf(MlflowError);
  expect(err.message).toBe(
    'MLflow runs/get: UNAUTHENTICATED (HTTP 401): You are not authenticated. (sent a Bearer token (MLFLOW_TRACKING_TOKEN))',
  );
  expect(err.message).not.toContain('tok-secret');
});

test('half a username/password pair is an error naming the missing variable', () => {
  expect(() => loadMlflowAuth({ MLFLOW_TRACKING_USERNAME: 'alice' })).toThrow(
    'environment variable MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not',
  );
  expect(() => loadMlflowAuth({ MLFLOW_TRACKING_PASSWORD: 'p' })).toThrow(
    'environment variable MLFLOW_TRACKING_PASSWORD is set but MLFLOW_TRACKING_USERNAME is not',
  );
});
