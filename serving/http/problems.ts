/**
 * What the HTTP API answers when a call fails: an HTTP status and `{ error: { code, message, field } }`, the message
 * naming the field and the limit it broke, like the gRPC side's INVALID_ARGUMENT details (validate.ts) so a caller can
 * fix the request without reading our code. Three sources: the body parser (malformed JSON, a body over the size
 * limit), the zod schemas (wrong types, out-of-range values, unknown fields) and RecommenderCore's results (gRPC
 * status codes: INVALID_ARGUMENT 400, UNAVAILABLE 503, INTERNAL 500).
 */
import { status } from '@grpc/grpc-js';
import type { z } from 'zod';
import type { ErrorBody, ErrorCode } from './schemas';

export interface ApiError {
  httpStatus: number;
  code: ErrorCode;
  message: string;
  field: string | null;
}

export const errorBody = (e: ApiError): ErrorBody => ({ error: { code: e.code, message: e.message, field: e.field } });

export const invalid = (message: string, field: string | null = null): ApiError => ({
  httpStatus: 400,
  code: 'INVALID_ARGUMENT',
  message,
  field,
});

/** ['history', 2, 'item_id'] -> history[2].item_id */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

/** The value at `path` in the parsed body, to quote it in a message. */
function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let v = body;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  return typeof v === 'number' || typeof v === 'boolean' ? String(v) : typeof v;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'an array',
  object: 'an object',
};

type Def = {
  type: string;
  format?: string;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  innerType?: z.ZodType;
};

/** The definition of what `schema` expects at `path` (through objects, arrays and defaults). */
function defAt(schema: z.ZodType, path: readonly PropertyKey[]): Def | undefined {
  let s: z.ZodType | undefined = schema;
  let i = 0;
  while (s) {
    const def = s._zod.def as unknown as Def;
    if (def.innerType) s = def.innerType;
    else if (i === path.length) return def;
    else if (def.shape) s = def.shape[String(path[i++])];
    else if (def.element) {
      i++;
      s = def.element;
    } else return undefined;
  }
  return undefined;
}

/**
 * The first problem zod found in `body` against `schema`, as an ApiError. An unknown field comes first, as on the
 * gRPC side (validate.ts): a field the caller thinks matters may change how the rest should be read.
 */
export function schemaProblem(schema: z.ZodType, issues: readonly z.core.$ZodIssue[], body: unknown): ApiError {
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  const field = fieldPath(issue.path);
  const name = field === '' ? 'the body' : field;
  switch (issue.code) {
    case 'unrecognized_keys': {
      const key = issue.keys[0]!;
      const where = field === '' ? key : `${field}.${key}`;
      const shape = defAt(schema, issue.path)?.shape;
      const known = shape ? Object.keys(shape) : [];
      return invalid(
        `unknown field ${where}: ${field === '' ? 'the body' : field} has only ${known.join(', ')}` +
          ' (fields the contract does not define are refused)',
        where,
      );
    }
    case 'invalid_type': {
      const got = valueAt(body, issue.path);
      if (got === undefined) return invalid(`${name} is required`, field || null);
      // zod says `number` for a non-number given where an integer is expected; the schema knows better.
      const expected = defAt(schema, issue.path)?.format?.includes('int') ? 'int' : issue.expected;
      return invalid(`${name} must be ${EXPECTED[expected] ?? expected}, got ${describe(got)}`, field || null);
    }
    case 'too_big':
    case 'too_small': {
      const got = valueAt(body, issue.path);
      const big = issue.code === 'too_big';
      const limit = big ? issue.maximum : issue.minimum;
      if (issue.origin === 'string') {
        const len = typeof got === 'string' ? got.length : 0;
        if (!big && len === 0) return invalid(`${name} must not be empty`, field);
        return invalid(
          `${name} is ${len} characters long; the ${big ? 'limit' : 'minimum'} is ${String(limit)}`,
          field,
        );
      }
      if (issue.origin === 'array') {
        const n = Array.isArray(got) ? got.length : 0;
        return invalid(`${name} has ${n} items; the ${big ? 'limit' : 'minimum'} is ${String(limit)}`, field);
      }
      return invalid(`${name} must be ${big ? 'at most' : 'at least'} ${String(limit)}, got ${describe(got)}`, field);
    }
    case 'invalid_value':
      return invalid(
        `${name} must be one of ${issue.values.map(String).join(', ')}, got ${describe(valueAt(body, issue.path))}`,
        field || null,
      );
    default:
      return invalid(`${name}: ${issue.message}`, field || null);
  }
}

/** Fields a RecommenderCore message may start with (validate.ts names them first). */
const CORE_FIELDS = new Set([
  'user_id',
  'history',
  'k',
  'exclude_item_ids',
  'item_id',
  'event',
  'request_id',
  'event_id',
  'value',
  'timestamp_ms',
]);

/** `events[3]: user_id is required` -> events[3].user_id; `k must be ...` -> k; none when it names no field. */
export function fieldOfMessage(message: string): string | null {
  const m = /^(?:(events\[\d+\]): )?([a-z_]+)((?:\[\d+\])?(?:\.[a-z_]+)?)/.exec(message);
  if (!m || !CORE_FIELDS.has(m[2]!)) return null;
  return `${m[1] ? `${m[1]}.` : ''}${m[2]}${m[3]}`;
}

/** A RecommenderCore failure (a gRPC status) as the HTTP answer. */
export function coreProblem(code: status, message: string): ApiError {
  switch (code) {
    case status.INVALID_ARGUMENT:
      return invalid(message, fieldOfMessage(message));
    case status.UNAVAILABLE:
      return { httpStatus: 503, code: 'UNAVAILABLE', message, field: null };
    default:
      return { httpStatus: 500, code: 'INTERNAL', message, field: null };
  }
}

/**
 * An error thrown by express.json (body-parser) as the answer. It marks its errors with `type` and `status`: a body
 * over the limit, malformed JSON, an unsupported charset; the client going away mid-body needs no answer.
 */
export function bodyParserProblem(err: unknown, limitBytes: number): ApiError {
  const e = err as { type?: string; status?: number; message?: string; length?: number };
  switch (e.type) {
    case 'entity.too.large':
      return invalid(
        `the request body is ${e.length ?? 'more than the limit of'} bytes; the limit is ${limitBytes} bytes` +
          ` (${(limitBytes / 1024 / 1024).toFixed(0)} MiB)`,
      );
    case 'entity.parse.failed':
      return invalid(`the request body is not valid JSON: ${e.message ?? 'parse error'}`);
    default:
      if (typeof e.status === 'number' && e.status >= 400 && e.status < 500)
        return invalid(`the request body cannot be read: ${e.message ?? String(e.type)}`);
      return { httpStatus: 500, code: 'INTERNAL', message: e.message ?? String(err), field: null };
  }
}
