/**
 * The HTTP/JSON API's bodies as zod schemas: recsys.v1's messages in JSON with the .proto's snake_case field names and
 * enums as their names (proto3's JSON mapping, minus its tolerance for unknown fields). They are both the validation
 * of every request (strict objects: a field the contract does not define is refused, as the gRPC side refuses one)
 * and the source of the OpenAPI document (openapi.ts), so the two cannot disagree. Built once at module load: parsing
 * a body costs about a microsecond, no schema is compiled per request.
 *
 * The bounds here are the absolute ones (validate.ts' DEFAULT_LIMITS, int32 for k); the version that serves a
 * request checks its own (k up to the model's top_k, its history limit) in RecommenderCore.
 */
import { z } from 'zod';
import { FEEDBACK_EVENTS } from '../../lib/feedback-events';
import { FallbackReason } from '../../proto/generated/recsys/v1/FallbackReason';
import { HistorySource } from '../../proto/generated/recsys/v1/HistorySource';
import { DEFAULT_LIMITS } from '../validate';

/** The most events one POST /v1/events may carry. */
export const MAX_EVENTS_PER_BATCH = 500;
/** The largest request body, in bytes (express.json's limit). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** The schemas the OpenAPI document names (components/schemas/<id>); nested ones become $refs. */
export const apiSchemas = z.registry<{ id: string }>();

const id = (what: string) =>
  z.string().min(1).max(DEFAULT_LIMITS.maxIdLength).describe(`${what} (1 to ${DEFAULT_LIMITS.maxIdLength} characters)`);
const epochMs = (what: string) => z.int().min(0).default(0).describe(what);

export const HistoryItemSchema = z
  .strictObject({
    item_id: id('The item'),
    timestamp_ms: epochMs(
      'Unix epoch milliseconds; 0 (the default) when unknown. The history is ordered by it, oldest first.',
    ),
  })
  .describe('One past interaction of the user.');
apiSchemas.add(HistoryItemSchema, { id: 'HistoryItem' });

export const RecommendRequestSchema = z
  .strictObject({
    user_id: id('The user'),
    history: z
      .array(HistoryItemSchema)
      .max(DEFAULT_LIMITS.maxHistory)
      .default([])
      .describe(
        'Recent interactions. Empty (the default): the server uses the online store, then the dataset, then ' +
          'popularity; history_source in the response says which.',
      ),
    k: z.int32().min(1).describe("How many items to return: 1 to the serving model's top_k."),
    exclude_item_ids: z
      .array(z.string().max(DEFAULT_LIMITS.maxIdLength))
      .max(DEFAULT_LIMITS.maxExcludes)
      .default([])
      .describe('Items never to return (items of the history are never returned either).'),
  })
  .describe('recsys.v1.RecommendRequest');
apiSchemas.add(RecommendRequestSchema, { id: 'RecommendRequest' });

export const ScoredItemSchema = z.strictObject({
  item_id: z.string(),
  score: z.number().describe('Higher is better; model and popularity scores are on different scales.'),
});
apiSchemas.add(ScoredItemSchema, { id: 'ScoredItem' });

export const StageLineageSchema = z.strictObject({
  name: z.string().describe('model, or a cascade’s recall, rank, rerank.'),
  graph_sha256: z.string().describe('sha256 of the stage’s ONNX graph, as the registry records it.'),
  latency_ms: z.number(),
});
apiSchemas.add(StageLineageSchema, { id: 'StageLineage' });

export const RecommendResponseSchema = z
  .strictObject({
    items: z.array(ScoredItemSchema).describe('Best first.'),
    model_name: z.string().describe('The registered model (MLflow) that answered.'),
    model_version: z.string(),
    dataset_name: z.string().describe('The dataset version the model was trained on.'),
    dataset_version: z.string(),
    request_id: z.string().describe('Unique per response (also the x-request-id header); send it back with events.'),
    fallback: z.boolean().describe('True when the items are the most popular ones instead of the model’s.'),
    fallback_reason: z.enum(FallbackReason),
    history_source: z.enum(HistorySource).describe('Which history the items were ranked with.'),
    online_store_degraded: z
      .boolean()
      .describe('True when the online store could not be read in time: the history came from elsewhere.'),
    route: z
      .string()
      .describe(
        'single, fallback, or for a cascade version: cheap (the recall stage was confident), cascade (recall, rank, ' +
          're-rank) or cheap-budget (not confident, but the expensive path’s budget was spent).',
      ),
    stages: z
      .array(StageLineageSchema)
      .describe('The stages that ran, in order, with the checksum of each graph and its latency.'),
  })
  .describe('recsys.v1.RecommendResponse');
apiSchemas.add(RecommendResponseSchema, { id: 'RecommendResponse' });

export const FeedbackEventSchema = z
  .strictObject({
    request_id: z
      .string()
      .max(DEFAULT_LIMITS.maxIdLength)
      .default('')
      .describe('The request_id of the recommendation this event is about; empty for events outside one.'),
    user_id: id('The user'),
    item_id: id('The item'),
    event: z.enum(FEEDBACK_EVENTS).describe('recsys.v1.FeedbackEvent, by name.'),
    timestamp_ms: epochMs('Unix epoch milliseconds when it happened; 0 (the default) means when received.'),
    value: z.number().default(0).describe('Optional magnitude: a rating, a price, a watch time.'),
    event_id: z
      .string()
      .max(DEFAULT_LIMITS.maxIdLength)
      .default('')
      .describe('Optional; makes a retried event count once (else request_id + item + event + time do).'),
  })
  .describe('recsys.v1.FeedbackRequest');
apiSchemas.add(FeedbackEventSchema, { id: 'FeedbackEvent' });

export const FeedbackBatchSchema = z
  .strictObject({ events: z.array(FeedbackEventSchema).min(1).max(MAX_EVENTS_PER_BATCH) })
  .describe(`Up to ${MAX_EVENTS_PER_BATCH} events, validated together: none is recorded when one is invalid.`);
apiSchemas.add(FeedbackBatchSchema, { id: 'FeedbackBatch' });

export const FeedbackResultSchema = z
  .strictObject({
    recorded_online: z.boolean().describe('The event is in the online store (the next recommendation sees it).'),
    duplicate: z.boolean().describe('The online store had already recorded this event: nothing changed.'),
  })
  .describe('recsys.v1.FeedbackResponse');
apiSchemas.add(FeedbackResultSchema, { id: 'FeedbackResult' });

export const FeedbackBatchResultSchema = z
  .strictObject({ results: z.array(FeedbackResultSchema).describe('One per event, in order.') })
  .describe('The outcome of a batch.');
apiSchemas.add(FeedbackBatchResultSchema, { id: 'FeedbackBatchResult' });

export const ErrorCodeSchema = z.enum(['INVALID_ARGUMENT', 'NOT_FOUND', 'UNIMPLEMENTED', 'UNAVAILABLE', 'INTERNAL']);
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;

export const ErrorBodySchema = z
  .strictObject({
    error: z.strictObject({
      code: ErrorCodeSchema.describe('The gRPC status name the same failure has on the gRPC side.'),
      message: z.string().describe('What is wrong, naming the field and the limit.'),
      field: z
        .string()
        .nullable()
        .describe('The offending field as a path (history[2].item_id); null when not about one field.'),
    }),
  })
  .describe('Every error response.');
apiSchemas.add(ErrorBodySchema, { id: 'Error' });

export const ReadyBodySchema = z
  .strictObject({
    status: z.literal('ready'),
    versions: z.array(
      z.strictObject({ model_name: z.string(), model_version: z.string(), weight: z.number().describe('percent') }),
    ),
  })
  .describe('The versions loaded and their share of traffic.');
apiSchemas.add(ReadyBodySchema, { id: 'Ready' });

export type RecommendBody = z.output<typeof RecommendRequestSchema>;
export type FeedbackEventBody = z.output<typeof FeedbackEventSchema>;
export type RecommendResponseBody = z.output<typeof RecommendResponseSchema>;
export type FeedbackResultBody = z.output<typeof FeedbackResultSchema>;
export type ErrorBody = z.output<typeof ErrorBodySchema>;
