/**
 * The MLflow client's own logic (status before JSON, deadlines, filter quoting) against a local HTTP server started
 * here that answers the way a proxy in front of MLflow, or a hung MLflow, does. The real MLflow is covered by
 * tests/integration/mlflow-client.test.ts.
 */
import http from 'node:http';
import type net from 'node:net';
import { filterValue, MlflowClient, MlflowError, MlflowUnavailableError } from '../../../../lib/mlflow/client';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
let handler: Handler = (_req, res) => res.end('{}');
const sockets = new Set<net.Socket>();
const server = http.createServer((req, res) => handler(req, res));
server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
let base: string;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

const client = (timeoutMs = 5_000) => new MlflowClient(base, { timeoutMs, uploadTimeoutMs: timeoutMs });
const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error,
  );

describe('HTTP status before JSON', () => {
  test('an HTML error page surfaces as its status and the endpoint, not as a JSON parse error', async () => {
    handler = (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>nginx</body></html>');
    };
    const err = await failure(client().getRegisteredModel('m'));
    expect(err).toBeInstanceOf(MlflowError);
    expect((err as MlflowError).status).toBe(502);
    expect(err.message).toBe('MLflow registered-models/get: HTTP_ERROR (HTTP 502): text/html page: 502 Bad Gateway');
  });

  test('a JSON API error keeps its code, and a missing resource is still notFound', async () => {
    handler = (_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'Registered Model with name=m not found' }),
      );
    };
    const err = (await failure(client().getRegisteredModel('m'))) as MlflowError;
    expect(err.notFound).toBe(true);
    expect(err.message).toContain('RESOURCE_DOES_NOT_EXIST (HTTP 404): Registered Model with name=m not found');
  });

  test('a 200 that is not JSON names the endpoint and shows what came back', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('maintenance window');
    };
    const err = await failure(client().getRun('r1'));
    expect(err.message).toBe('MLflow runs/get: HTTP 200 but the body is not JSON: maintenance window');
  });

  test('a failed artefact upload shows its status and the page title', async () => {
    handler = (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>Service Unavailable</title>');
    };
    const run = { info: { run_id: 'r', experiment_id: '1', artifact_uri: 'mlflow-artifacts:/1/r/artifacts' } };
    const err = (await failure(client().uploadArtifact(run, 'a.json', '{}'))) as MlflowError;
    expect(err.status).toBe(503);
    expect(err.message).toContain('Service Unavailable');
  });
});

describe('deadlines', () => {
  test('a hung MLflow (accepts, never answers) fails within the deadline, naming the endpoint and the timeout', async () => {
    handler = () => undefined;
    const started = Date.now();
    const err = await failure(client(300).getVersionByAlias('m', 'champion'));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(MlflowUnavailableError);
    expect((err as MlflowUnavailableError).timedOut).toBe(true);
    expect(err.message).toBe(`MLflow GET registered-models/alias at ${base}: no answer within 300 ms`);
  }, 10_000);

  test('a response whose body stalls is cut by the same deadline', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"run": ');
    };
    const err = await failure(client(300).getRun('r1'));
    expect(err.message).toBe(`MLflow GET runs/get at ${base}: no answer within 300 ms`);
  }, 10_000);

  test('an upload to a hung MLflow fails within its own deadline', async () => {
    handler = () => undefined;
    const run = { info: { run_id: 'r', experiment_id: '1', artifact_uri: 'mlflow-artifacts:/1/r/artifacts' } };
    const slow = new MlflowClient(base, { timeoutMs: 60_000, uploadTimeoutMs: 300 });
    const err = await failure(slow.uploadArtifact(run, 'a.json', '{}'));
    expect(err.message).toBe(`MLflow PUT mlflow-artifacts at ${base}: no answer within 300 ms`);
  }, 10_000);

  test('nothing listening is an error naming the endpoint and the cause', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const err = await failure(new MlflowClient(`http://127.0.0.1:${port}`, { timeoutMs: 2_000 }).getRun('r1'));
    expect(err).toBeInstanceOf(MlflowUnavailableError);
    expect(err.message).toBe(`MLflow GET runs/get at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`);
  });
});

describe('filterValue', () => {
  // MLflow 3.17 takes the text between the quotes verbatim (no unescaping); its tokenizer pairs a backslash with a
  // following quote. These encodings were checked against the real server: each one finds exactly its value.
  test.each([
    ['two-tower', "'two-tower'"],
    ["it's", `"it's"`],
    ['say "hi"', `'say "hi"'`],
    ['back\\slash', "'back\\slash'"],
    ["x\\' or 1", `"x\\' or 1"`],
  ])('%s is quoted as %s', (value, quoted) => {
    expect(filterValue(value)).toBe(quoted);
  });

  test.each([
    ['trail\\', 'ends with a backslash'],
    [`it's "both"`, 'contains both quote characters'],
  ])('%s cannot be searched for: an error naming it', (value, why) => {
    expect(() => filterValue(value)).toThrow(`MLflow filter value ${JSON.stringify(value)} ${why}`);
  });
});

describe('logged models (MLflow 3)', () => {
  /** Records each request (method, path, JSON body) and answers with `answer(path)`. */
  function recording(answer: (path: string) => unknown) {
    const seen: { method: string; path: string; body: unknown }[] = [];
    handler = (req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        let body: unknown = raw;
        try {
          body = raw ? JSON.parse(raw) : undefined;
        } catch {
          // an artefact upload: the file's text
        }
        seen.push({ method: req.method!, path: req.url!, body });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer(req.url!)));
      });
    };
    return seen;
  }
  const loggedModel = {
    model: {
      info: {
        model_id: 'm-1',
        experiment_id: '7',
        name: 'model',
        artifact_uri: 'mlflow-artifacts:/7/models/m-1/artifacts',
        status: 'LOGGED_MODEL_PENDING',
        creation_timestamp_ms: 1796152939701,
      },
    },
  };

  test('a model with more params than one request takes gets the rest in batches of 100', async () => {
    const seen = recording(() => loggedModel);
    const params = Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`p${i}`, String(i)]));
    const model = await client().createLoggedModel('7', { name: 'model', sourceRunId: 'r1', params });
    expect(model.info.model_id).toBe('m-1');
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([
      'POST /api/2.0/mlflow/logged-models',
      'POST /api/2.0/mlflow/logged-models/m-1/params',
      'POST /api/2.0/mlflow/logged-models/m-1/params',
    ]);
    const sizes = seen.map((s) => (s.body as { params: unknown[] }).params.length);
    expect(sizes).toEqual([100, 100, 50]);
    expect(seen[0]!.body).toMatchObject({ experiment_id: '7', name: 'model', source_run_id: 'r1' });
  });

  test('finalize is a PATCH of the status; uploads go under the model’s own artefact root', async () => {
    const seen = recording(() => loggedModel);
    await client().finalizeLoggedModel('m-1', 'LOGGED_MODEL_READY');
    await client().uploadLoggedModelArtifact(loggedModel.model, 'stages/rank.onnx', 'graph');
    expect(seen).toEqual([
      {
        method: 'PATCH',
        path: '/api/2.0/mlflow/logged-models/m-1',
        body: { model_id: 'm-1', status: 'LOGGED_MODEL_READY' },
      },
      {
        method: 'PUT',
        path: '/api/2.0/mlflow-artifacts/artifacts/7/models/m-1/artifacts/stages/rank.onnx',
        body: 'graph',
      },
    ]);
  });

  test('a version registered from a logged model sends its model_id', async () => {
    const seen = recording(() => ({ model_version: { name: 'm', version: '3', source: 'models:/m-1' } }));
    await client().createModelVersion('m', 'models:/m-1', 'r1', { a: 'b' }, undefined, 'm-1');
    expect(seen[0]!.body).toEqual({
      name: 'm',
      source: 'models:/m-1',
      run_id: 'r1',
      tags: [{ key: 'a', value: 'b' }],
      model_id: 'm-1',
    });
  });

  test("a version's MLmodel is read through the UI's route; a missing version is MLflow's error", async () => {
    handler = (req, res) => {
      if (req.url!.includes('version=1')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('flavors:\n  onnx: {}\n');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error_code: 'RESOURCE_DOES_NOT_EXIST',
          message: 'Model Version (name=m, version=2) not found',
        }),
      );
    };
    expect(await client().getModelVersionArtifact('m', '1', 'MLmodel')).toBe('flavors:\n  onnx: {}\n');
    const err = (await failure(client().getModelVersionArtifact('m', '2', 'MLmodel'))) as MlflowError;
    expect(err.notFound).toBe(true);
    expect(err.message).toContain('model-versions/get-artifact: RESOURCE_DOES_NOT_EXIST (HTTP 404)');
  });
});
