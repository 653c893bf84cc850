/**
 * One JSON exchange with an OpenStack service (Keystone, Blazar) under a deadline, with errors that name the service,
 * the method, the host and path, the status and the service's own message. Request bodies (which may hold credentials)
 * and query strings never go into an error.
 */

export type Service = 'Keystone' | 'Blazar';
export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** The service answered with an error status. */
export class ChameleonHttpError extends Error {
  override readonly name = 'ChameleonHttpError';
  constructor(
    readonly service: Service,
    readonly method: Method,
    /** host and path, e.g. chi.tacc.chameleoncloud.org:1234/v1/leases */
    readonly where: string,
    readonly status: number,
    readonly detail: string,
  ) {
    super(`${service} ${method} ${where}: HTTP ${status}: ${detail}`);
  }
  get notFound(): boolean {
    return this.status === 404;
  }
}

/** No usable answer: no connection, or none within the deadline. Worth retrying. */
export class ChameleonUnavailableError extends Error {
  override readonly name = 'ChameleonUnavailableError';
  constructor(
    readonly service: Service,
    readonly timedOut: boolean,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface JsonRequest {
  service: Service;
  method: Method;
  url: string;
  headers?: Record<string, string>;
  body?: unknown;
  timeoutMs: number;
  /** The caller's cancellation (an activity's), on top of the deadline. */
  signal?: AbortSignal;
}

export interface JsonResponse {
  status: number;
  headers: Headers;
  /** The parsed body; undefined when empty. */
  json: unknown;
}

/** host + path of a URL: what errors show (never userinfo or the query). */
export function where(url: string): string {
  const u = new URL(url);
  return `${u.host}${u.pathname}`;
}

function field(obj: unknown, key: string): unknown {
  return typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
}

/**
 * The message worth quoting from an error body: Blazar's `error_message`, Keystone's `error.message`, a WSME
 * `faultstring`, an HTML page's title, else the start of the text.
 */
export function serviceMessage(text: string, contentType: string | null): string {
  try {
    const json: unknown = JSON.parse(text);
    const m =
      field(json, 'error_message') ??
      field(field(json, 'error'), 'message') ??
      field(json, 'faultstring') ??
      field(json, 'message');
    if (typeof m === 'string' && m) return m.slice(0, 500);
  } catch {
    // not JSON: fall through
  }
  if (/html/i.test(contentType ?? '') || /^\s*</.test(text)) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]?.trim();
    return `HTML page: ${(
      title ||
      text
        .replace(/<[^>]*>/g, ' ')
        .replace(/\s+/g, ' ')
        .trim()
    ).slice(0, 200)}`;
  }
  return text.trim().slice(0, 300) || '(empty body)';
}

export async function requestJson(req: JsonRequest): Promise<JsonResponse> {
  const at = `${req.service} ${req.method} ${where(req.url)}`;
  const deadline = AbortSignal.timeout(req.timeoutMs);
  const signal = req.signal ? AbortSignal.any([deadline, req.signal]) : deadline;
  const headers: Record<string, string> = { accept: 'application/json', ...req.headers };
  if (req.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  let text: string;
  try {
    res = await fetch(req.url, {
      method: req.method,
      headers,
      signal,
      ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
    });
    text = await res.text();
  } catch (err) {
    // The caller's cancellation is not the service's fault: pass its reason on as it is.
    if (req.signal?.aborted) throw req.signal.reason ?? err;
    if (deadline.aborted)
      throw new ChameleonUnavailableError(req.service, true, `${at}: no answer within ${req.timeoutMs} ms`, {
        cause: err,
      });
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new ChameleonUnavailableError(
      req.service,
      false,
      `${at}: ${cause?.message ?? cause?.code ?? (err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (!res.ok)
    throw new ChameleonHttpError(
      req.service,
      req.method,
      where(req.url),
      res.status,
      serviceMessage(text, res.headers.get('content-type')),
    );
  if (!text) return { status: res.status, headers: res.headers, json: undefined };
  try {
    return { status: res.status, headers: res.headers, json: JSON.parse(text) };
  } catch {
    throw new Error(
      `${at}: HTTP ${res.status} but the body is not JSON: ${serviceMessage(text, res.headers.get('content-type'))}`,
    );
  }
}
