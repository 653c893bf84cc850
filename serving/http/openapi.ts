/**
 * The OpenAPI 3.1 document of the HTTP API (GET /v1/openapi.json), generated from the zod schemas that validate the
 * requests (schemas.ts) with zod's own z.toJSONSchema: the document cannot drift from what the server accepts.
 * OpenAPI 3.1 schema objects are JSON Schema 2020-12, zod's default target. Built once per process and kept as text.
 */
import { z } from 'zod';
import { API_VERSION_HEADERS, REQUEST_ID_HEADER } from './headers';
import { MAX_BODY_BYTES, MAX_EVENTS_PER_BATCH, apiSchemas } from './schemas';

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (schema: object, description: string) => ({
  description,
  headers: Object.fromEntries(
    [REQUEST_ID_HEADER, ...API_VERSION_HEADERS].map((h) => [h, { $ref: `#/components/headers/${h}` }]),
  ),
  content: { 'application/json': { schema } },
});
const errors = {
  '400': json(
    ref('Error'),
    'The body is not valid: malformed JSON, wrong types, out-of-range values, unknown fields, or larger than ' +
      `${MAX_BODY_BYTES} bytes. The message names the field and the limit.`,
  ),
  '503': json(ref('Error'), 'No model version is loaded yet (GET /readyz is 503 too).'),
  '500': json(ref('Error'), 'Inference failed for this request; the server keeps serving the next ones.'),
};

function components(): Record<string, object> {
  const { schemas } = z.toJSONSchema(apiSchemas, { io: 'input', uri: (id) => `#/components/schemas/${id}` });
  // Each comes out as a document of its own ($schema, $id); inside components they are plain schema objects.
  return Object.fromEntries(
    Object.entries(schemas).map(([id, s]) => {
      const rest = { ...(s as Record<string, unknown>) };
      delete rest.$schema;
      delete rest.$id;
      return [id, rest];
    }),
  );
}

export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'recsys serving HTTP/JSON API',
      version: '1',
      description:
        'recsys.v1.Recommender over HTTP/JSON, beside gRPC in the same `recsys serve` process: the same model pool, ' +
        'traffic policy (a canary split applies to both), request log and metrics. Field names are the .proto’s ' +
        '(snake_case), enums are their names, and fields the contract does not define are refused. Every response ' +
        'carries x-request-id and the lineage of the version that answered (x-recsys-* headers).',
    },
    paths: {
      '/v1/recommend': {
        post: {
          operationId: 'recommend',
          summary: 'Top-k recommendations for a user',
          requestBody: { required: true, content: { 'application/json': { schema: ref('RecommendRequest') } } },
          responses: { '200': json(ref('RecommendResponse'), 'The items, best first, with their lineage.'), ...errors },
        },
      },
      '/v1/events': {
        post: {
          operationId: 'events',
          summary: `Record what users did: one event, or { "events": [...] } (up to ${MAX_EVENTS_PER_BATCH})`,
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: { oneOf: [ref('FeedbackEvent'), ref('FeedbackBatch')] } },
            },
          },
          responses: {
            '200': json(
              { oneOf: [ref('FeedbackResult'), ref('FeedbackBatchResult')] },
              'One result for one event, `results` (in order) for a batch.',
            ),
            ...errors,
          },
        },
      },
      '/healthz': {
        get: {
          operationId: 'healthz',
          summary: 'The process is up',
          responses: {
            '200': json({ type: 'object', properties: { status: { const: 'ok' } } }, 'Up.'),
          },
        },
      },
      '/readyz': {
        get: {
          operationId: 'readyz',
          summary: 'Ready to serve: a model version is loaded (and the server is not draining)',
          responses: {
            '200': json(ref('Ready'), 'Ready.'),
            '503': json(ref('Error'), 'No version loaded yet, or shutting down.'),
          },
        },
      },
      '/v1/openapi.json': {
        get: {
          operationId: 'openapi',
          summary: 'This document',
          responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': {} } } },
        },
      },
    },
    components: {
      schemas: components(),
      headers: {
        [REQUEST_ID_HEADER]: {
          description: 'Unique per response; for POST /v1/recommend the body’s request_id.',
          schema: { type: 'string' },
        },
        'x-recsys-model': { description: 'The registered model that answered.', schema: { type: 'string' } },
        'x-recsys-model-version': { description: 'Its version.', schema: { type: 'string' } },
        'x-recsys-dataset': { description: 'The dataset it was trained on.', schema: { type: 'string' } },
        'x-recsys-dataset-version': { description: 'That dataset’s version.', schema: { type: 'string' } },
      },
    },
  };
}

let text: string | undefined;
/** The document as JSON text, built on first use. */
export const openApiText = (): string => (text ??= JSON.stringify(openApiDocument()));
