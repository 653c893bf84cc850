/**
 * The load generator of bench/online-path.ts, one process per measurement:
 *   node --import tsx bench/online-load.ts '<OnlineLoadSpec JSON>'
 * The closed loop of bench/serving-load.ts (closedLoop: `concurrency` calls in flight, each completion sends the
 * next, bounded in time), over one of:
 *   grpc-recommend  Recommend on one HTTP/2 connection; the variant's requests encoded up front, responses not decoded
 *   grpc-feedback   Feedback, one event per call; each event has its own id, so each is encoded when sent
 *   http-recommend  POST /v1/recommend with Node's http and a keep-alive Agent (maxSockets = concurrency): bodies
 *                   serialised up front, responses read to the end but not parsed (any status but 200 is an error)
 *   http-events     POST /v1/events, one event per call, or `batch` events per call ({"events": [...]}); the bodies
 *                   are built when sent, since every event carries its own id
 * Event ids are `<eventPrefix>-<n>`, n counting the events of the run from 0, so a run's events can be found in the
 * store afterwards. Prints one JSON line (LoadResult).
 */
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { packageDefinition } from '../serving/proto';
import { benchEvent, benchEventJson, variantRequests, type Variant } from './online-fixture';
import { closedLoop, type Call, type LoadResult, type LoopTiming } from './serving-load';

export type LoadKind = 'grpc-recommend' | 'grpc-feedback' | 'http-recommend' | 'http-events';

export interface OnlineLoadSpec extends LoopTiming {
  kind: LoadKind;
  /** host:port for gRPC, http://host:port for HTTP. */
  target: string;
  nItems: number;
  /** Recommend: which history the requests rely on (default `request`). */
  variant?: Variant;
  /** Events: the prefix of their ids (unique per run) and how many go in one call (http-events; default 1). */
  eventPrefix?: string;
  batch?: number;
}

const DEADLINE_MS = 10_000;
const identity = (b: Buffer) => b;

async function grpcClient(address: string): Promise<grpc.Client> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
  );
  return client;
}

function grpcCaller(client: grpc.Client, spec: OnlineLoadSpec): Call {
  const def = packageDefinition()['recsys.v1.Recommender'] as grpc.ServiceDefinition;
  if (spec.kind === 'grpc-recommend') {
    const encode = def.Recommend!.requestSerialize;
    const requests = variantRequests(spec.nItems, spec.variant ?? 'request').map((r) => encode(r));
    return (i, done) =>
      client.makeUnaryRequest(
        '/recsys.v1.Recommender/Recommend',
        identity,
        identity,
        requests[i % requests.length]!,
        { deadline: Date.now() + DEADLINE_MS },
        (err) => done(err ? err.message : undefined),
      );
  }
  const encode = def.Feedback!.requestSerialize;
  const prefix = spec.eventPrefix ?? 'grpc';
  return (i, done) =>
    client.makeUnaryRequest(
      '/recsys.v1.Recommender/Feedback',
      encode,
      identity,
      benchEvent(prefix, i, spec.nItems),
      { deadline: Date.now() + DEADLINE_MS },
      (err) => done(err ? err.message : undefined),
    );
}

/** POSTs `body(i)` to `path`; the answer is read to its end (and kept only when it is an error, for the message). */
function httpCaller(agent: http.Agent, spec: OnlineLoadSpec, path: string, body: (i: number) => Buffer): Call {
  const url = new URL(spec.target);
  return (i, done) => {
    const payload = body(i);
    let finished = false;
    const finish = (err?: string) => {
      if (finished) return;
      finished = true;
      done(err);
    };
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        const ok = res.statusCode === 200;
        let text = '';
        if (ok) res.resume();
        else res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => finish(ok ? undefined : `HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        res.on('error', (err) => finish(err.message));
      },
    );
    req.setTimeout(DEADLINE_MS, () => req.destroy(new Error(`no answer in ${DEADLINE_MS} ms`)));
    req.on('error', (err) => finish(err.message));
    req.end(payload);
  };
}

function httpBodies(spec: OnlineLoadSpec): { path: string; body: (i: number) => Buffer } {
  if (spec.kind === 'http-recommend') {
    const bodies = variantRequests(spec.nItems, spec.variant ?? 'request').map((r) => Buffer.from(JSON.stringify(r)));
    return { path: '/v1/recommend', body: (i) => bodies[i % bodies.length]! };
  }
  const prefix = spec.eventPrefix ?? 'http';
  const batch = spec.batch ?? 1;
  if (batch === 1)
    return { path: '/v1/events', body: (i) => Buffer.from(JSON.stringify(benchEventJson(prefix, i, spec.nItems))) };
  return {
    path: '/v1/events',
    body: (i) =>
      Buffer.from(
        JSON.stringify({
          events: Array.from({ length: batch }, (_, j) => benchEventJson(prefix, i * batch + j, spec.nItems)),
        }),
      ),
  };
}

async function run(spec: OnlineLoadSpec): Promise<LoadResult> {
  if (spec.kind === 'grpc-recommend' || spec.kind === 'grpc-feedback') {
    const client = await grpcClient(spec.target);
    try {
      return await closedLoop(spec, grpcCaller(client, spec));
    } finally {
      client.close();
    }
  }
  // One socket per call in flight, kept open across calls, as a backend's HTTP client pool does.
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency });
  try {
    const { path, body } = httpBodies(spec);
    return await closedLoop(spec, httpCaller(agent, spec, path, body));
  } finally {
    agent.destroy();
  }
}

if (require.main === module) {
  run(JSON.parse(process.argv[2] ?? '') as OnlineLoadSpec).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
