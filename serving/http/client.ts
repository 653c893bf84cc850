/**
 * A small client of the HTTP/JSON API (Node's fetch), for the CLI (`recsys recommend --http`, `recsys event --http`),
 * tests and benchmarks. A non-2xx answer becomes an HttpApiError carrying the status, the error body's code, message
 * and field, and the response headers (request id, lineage).
 */
import type { RecommendResponse__Output } from '../proto';
import type { FeedbackResultBody } from './schemas';

/** recsys serve's HTTP API on its default port. */
export const DEFAULT_HTTP_URL = 'http://127.0.0.1:8080';

export class HttpApiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly code: string,
    readonly field: string | null,
    message: string,
    readonly headers: Headers,
  ) {
    super(message);
    this.name = 'HttpApiError';
  }
}

/** The JSON forms of the calls (snake_case, enums by name; omitted fields take the .proto's defaults). */
export interface HttpRecommendRequest {
  user_id: string;
  history?: { item_id: string; timestamp_ms?: number }[];
  k: number;
  exclude_item_ids?: string[];
}
export interface HttpFeedbackEvent {
  request_id?: string;
  user_id: string;
  item_id: string;
  event: string;
  timestamp_ms?: number;
  value?: number;
  event_id?: string;
}

export interface HttpAnswer<T> {
  body: T;
  headers: Headers;
}

async function call<T>(method: 'GET' | 'POST', url: string, body: unknown, timeoutMs: number): Promise<HttpAnswer<T>> {
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new Error(`${method} ${url} failed: ${(err as Error).message}${cause ? ` (${cause})` : ''}`);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new HttpApiError(
      res.status,
      'UNKNOWN',
      null,
      `${method} ${url}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`,
      res.headers,
    );
  }
  if (!res.ok) {
    const e = (parsed as { error?: { code?: string; message?: string; field?: string | null } }).error ?? {};
    throw new HttpApiError(
      res.status,
      e.code ?? 'UNKNOWN',
      e.field ?? null,
      `HTTP ${res.status} ${e.code ?? ''}: ${e.message ?? text.slice(0, 200)}`,
      res.headers,
    );
  }
  return { body: parsed as T, headers: res.headers };
}

const join = (base: string, path: string) => `${base.replace(/\/+$/, '')}${path}`;

export const httpRecommend = (
  baseUrl: string,
  req: HttpRecommendRequest,
  timeoutMs = 10_000,
): Promise<HttpAnswer<RecommendResponse__Output>> => call('POST', join(baseUrl, '/v1/recommend'), req, timeoutMs);

/** One event: one result. */
export const httpEvent = (
  baseUrl: string,
  event: HttpFeedbackEvent,
  timeoutMs = 10_000,
): Promise<HttpAnswer<FeedbackResultBody>> => call('POST', join(baseUrl, '/v1/events'), event, timeoutMs);

/** A batch: one result per event, in order. */
export const httpEvents = (
  baseUrl: string,
  events: HttpFeedbackEvent[],
  timeoutMs = 10_000,
): Promise<HttpAnswer<{ results: FeedbackResultBody[] }>> =>
  call('POST', join(baseUrl, '/v1/events'), { events }, timeoutMs);

/** GET a path (/healthz, /readyz, /v1/openapi.json). */
export const httpGet = <T = unknown>(baseUrl: string, path: string, timeoutMs = 10_000): Promise<HttpAnswer<T>> =>
  call('GET', join(baseUrl, path), undefined, timeoutMs);
