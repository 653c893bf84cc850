/**
 * The HTTP/JSON API as an express 5 app: a thin adapter over RecommenderCore, as the gRPC service is, so both
 * protocols share one model pool and traffic policy (a canary split applies to HTTP calls too), one request log and
 * one set of metrics (methods `http_recommend`, `http_events`).
 *
 *   POST /v1/recommend     recsys.v1.RecommendRequest in JSON -> RecommendResponse
 *   POST /v1/events        one FeedbackRequest, or { "events": [...] } -> { recorded_online, duplicate } / { results }
 *   GET  /healthz          the process is up
 *   GET  /readyz           200 while a version is loaded (and not draining), else 503
 *   GET  /v1/openapi.json  the OpenAPI 3.1 document, generated from the zod schemas
 *
 * Bodies are validated by the zod schemas (schemas.ts) before the core sees them; every failure is
 * `{ error: { code, message, field } }` (problems.ts) and every response carries x-request-id and the lineage of the
 * version that answered (headers.ts). The request path is kept lean because it is benchmarked against gRPC: no
 * middleware besides express.json on the two POST routes, schemas built once, no ETag, responses written directly.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { ServableVersion } from '../model-version';
import type { Method, RecommenderCore, ServiceHooks } from '../recommender-core';
import { setRecommendHeaders, setResponseHeaders } from './headers';
import { openApiText } from './openapi';
import { bodyParserProblem, coreProblem, errorBody, invalid, schemaProblem, type ApiError } from './problems';
import {
  FeedbackBatchSchema,
  FeedbackEventSchema,
  MAX_BODY_BYTES,
  RecommendRequestSchema,
  type FeedbackEventBody,
} from './schemas';

export interface HttpApiOptions {
  core: RecommenderCore;
  /**
   * The hooks the core reports to (the same object), for the failures found before the core is called (a body that
   * is not JSON or fails its schema): they count as errors of `http_recommend` / `http_events` like the core's own.
   */
  hooks?: Pick<ServiceHooks, 'onError'>;
  /** The largest body accepted, in bytes (default MAX_BODY_BYTES, 1 MiB). */
  bodyLimitBytes?: number;
}

export interface HttpApi {
  app: express.Express;
  /** From now on GET /readyz answers 503 and every response closes its connection (the server is shutting down). */
  drain(): void;
}

const ROUTES: Record<string, { allow: string; method?: Method }> = {
  '/v1/recommend': { allow: 'POST', method: 'http_recommend' },
  '/v1/events': { allow: 'POST', method: 'http_events' },
  '/healthz': { allow: 'GET' },
  '/readyz': { allow: 'GET' },
  '/v1/openapi.json': { allow: 'GET' },
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function httpApi(opts: HttpApiOptions): HttpApi {
  const { core } = opts;
  const pool = core.pool;
  const limit = opts.bodyLimitBytes ?? MAX_BODY_BYTES;
  let draining = false;

  const send = (res: ServerResponse, httpStatus: number, body: string) => {
    res.statusCode = httpStatus;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    if (draining) res.setHeader('connection', 'close');
    res.end(body);
  };
  const fail = (res: ServerResponse, e: ApiError, v: ServableVersion | undefined) => {
    setResponseHeaders(res, randomUUID(), v);
    send(res, e.httpStatus, JSON.stringify(errorBody(e)));
  };
  /** A failure found before the core: answered and counted like the core's own. */
  const refuse = (res: ServerResponse, method: Method, e: ApiError, v: ServableVersion | undefined) => {
    opts.hooks?.onError?.(method, e.httpStatus === 500 ? status.INTERNAL : status.INVALID_ARGUMENT, v);
    fail(res, e, v);
  };
  /** Express leaves the body undefined when it is not JSON (no or another content-type). */
  const notJson = (req: Request) =>
    invalid(
      `the request body must be JSON (content-type: application/json), got ${
        req.headers['content-type'] === undefined ? 'no content-type' : `content-type ${req.headers['content-type']}`
      }`,
    );

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false); // no cache sees these answers: hashing every body would be pure cost
  const json = express.json({ limit });

  app.post('/v1/recommend', json, async (req: Request, res: Response) => {
    const started = performance.now();
    const body: unknown = req.body;
    const userId = isObject(body) && typeof body.user_id === 'string' ? body.user_id : undefined;
    // The version that would serve this user: it "answered" a request that never reached the core.
    const asked = () => (userId === undefined ? pool.active : pool.pick(userId))?.version;
    if (body === undefined) return refuse(res, 'http_recommend', notJson(req), asked());
    const parsed = RecommendRequestSchema.safeParse(body);
    if (!parsed.success)
      return refuse(res, 'http_recommend', schemaProblem(RecommendRequestSchema, parsed.error.issues, body), asked());
    const r = await core.recommend(parsed.data, 'http_recommend', started);
    if (!r.ok) return fail(res, coreProblem(r.code, r.message), asked()); // the core counted it
    setRecommendHeaders(res, r.value);
    send(res, 200, JSON.stringify(r.value));
  });

  app.post('/v1/events', json, async (req: Request, res: Response) => {
    const body: unknown = req.body;
    // Events go to the namespace of the version with the most traffic (RecommenderCore.feedback): that one answers.
    const v = pool.active?.version;
    if (body === undefined) return refuse(res, 'http_events', notJson(req), v);
    const batch = isObject(body) && 'events' in body;
    let events: FeedbackEventBody[];
    if (batch) {
      const parsed = FeedbackBatchSchema.safeParse(body);
      if (!parsed.success)
        return refuse(res, 'http_events', schemaProblem(FeedbackBatchSchema, parsed.error.issues, body), v);
      events = parsed.data.events;
    } else {
      const parsed = FeedbackEventSchema.safeParse(body);
      if (!parsed.success)
        return refuse(res, 'http_events', schemaProblem(FeedbackEventSchema, parsed.error.issues, body), v);
      events = [parsed.data];
    }
    const r = await core.feedback(events, 'http_events');
    if (!r.ok) return fail(res, coreProblem(r.code, r.message), v);
    setResponseHeaders(res, randomUUID(), v);
    send(res, 200, JSON.stringify(batch ? { results: r.value } : r.value[0]));
  });

  app.get('/healthz', (_req: Request, res: Response) => {
    setResponseHeaders(res, randomUUID(), pool.active?.version);
    send(res, 200, '{"status":"ok"}');
  });

  app.get('/readyz', (_req: Request, res: Response) => {
    const active = pool.active;
    if (!active || draining)
      return fail(
        res,
        {
          httpStatus: 503,
          code: 'UNAVAILABLE',
          message: draining ? 'the server is shutting down' : 'no model version is loaded yet',
          field: null,
        },
        active?.version,
      );
    setResponseHeaders(res, randomUUID(), active.version);
    const versions = pool.state().versions.map(({ model, weight }) => ({
      model_name: model.version.name,
      model_version: model.version.version,
      weight,
    }));
    send(res, 200, JSON.stringify({ status: 'ready', versions }));
  });

  app.get('/v1/openapi.json', (_req: Request, res: Response) => {
    setResponseHeaders(res, randomUUID(), pool.active?.version);
    send(res, 200, openApiText());
  });

  // A known path with another method, then anything else.
  app.use((req: Request, res: Response) => {
    const route = ROUTES[req.path];
    if (route) {
      res.setHeader('allow', route.allow);
      return fail(
        res,
        {
          httpStatus: 405,
          code: 'UNIMPLEMENTED',
          message: `${req.method} ${req.path} is not supported; use ${route.allow}`,
          field: null,
        },
        pool.active?.version,
      );
    }
    fail(
      res,
      {
        httpStatus: 404,
        code: 'NOT_FOUND',
        message: `no such route: ${req.method} ${req.path} (see GET /v1/openapi.json)`,
        field: null,
      },
      pool.active?.version,
    );
  });

  // Body parser failures (malformed JSON, a body over the limit) and anything a handler threw.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const fromParser = typeof (err as { type?: unknown }).type === 'string';
    const e: ApiError = fromParser
      ? bodyParserProblem(err, limit)
      : { httpStatus: 500, code: 'INTERNAL', message: `the server failed: ${String(err)}`, field: null };
    const method = ROUTES[req.path]?.method;
    const v = pool.active?.version;
    if (method) refuse(res, method, e, v);
    else fail(res, e, v);
  });

  return {
    app,
    drain: () => {
      draining = true;
    },
  };
}
