/**
 * The recsys.v1.Recommender handlers: validate, take the version that serves the user once (the pool's traffic policy,
 * sticky by user id; taken once so a swap or a policy change mid-request cannot mix two versions), rank, answer with the lineage, then tell the hooks (request log, metrics). Failures go back to the
 * caller as status codes (INVALID_ARGUMENT, UNAVAILABLE, INTERNAL) and the server keeps serving.
 */
import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { messageOf } from './errors';
import { faultyRanker, type FaultTable } from './faults';
import type { ModelPool } from './model-pool';
import type { ServableVersion } from './model-version';
import type { FeedbackRequest, RecommendRequest, RecommendResponse__Output, RecommenderHandlers } from './proto';
import { recommend } from './recommend';
import { DEFAULT_LIMITS, feedbackProblem, recommendProblem } from './validate';

/**
 * Where served requests and feedback go besides the response (request and feedback logs, metrics: log-hooks.ts).
 * Hooks run on the request path, so they must be synchronous and cheap (an append to a buffer, a counter).
 */
export interface ServiceHooks {
  onFeedback?(event: FeedbackRequest, receivedAtMs: number): void;
  /** After a Recommend answer is sent; `latencyMs` from receiving the call to answering it. */
  onRecommend?(req: RecommendRequest, res: RecommendResponse__Output, receivedAtMs: number, latencyMs: number): void;
  /** After a call is answered with an error; `model` is the version that was asked, if one was loaded. */
  onError?(method: 'Recommend' | 'Feedback', code: status, model: ServableVersion | undefined): void;
}

const fail = (code: status, details: string): Partial<ServiceError> => ({ code, details });

/** `faults`: the faults injected per version (a server started with --allow-faults), applied to that version only. */
export function recommenderHandlers(
  slot: ModelPool,
  hooks: ServiceHooks = {},
  faults?: FaultTable,
): RecommenderHandlers {
  return {
    Recommend(call, callback) {
      const started = performance.now();
      const model = slot.pick(call.request.user_id);
      if (!model) {
        hooks.onError?.('Recommend', status.UNAVAILABLE, undefined);
        return callback(fail(status.UNAVAILABLE, 'no model version is loaded yet'));
      }
      const v = model.version;
      const problem = recommendProblem(call.request, model.limits);
      if (problem) {
        hooks.onError?.('Recommend', status.INVALID_ARGUMENT, v);
        return callback(fail(status.INVALID_ARGUMENT, problem));
      }
      const received = Date.now();
      model.acquire();
      const fault = faults?.get(v.version);
      const ranking = fault
        ? {
            catalog: model.catalog,
            excluded: model.excluded,
            ranker: faultyRanker(model.ranker, fault, model.catalog.nItems),
          }
        : model;
      recommend(ranking, call.request).then(
        (r) => {
          model.release();
          const res: RecommendResponse__Output = {
            items: r.items,
            model_name: v.name,
            model_version: v.version,
            dataset_name: v.dataset.name,
            dataset_version: v.dataset.version,
            request_id: randomUUID(),
            fallback: r.fallback,
            fallback_reason: r.fallbackReason,
          };
          callback(null, res);
          hooks.onRecommend?.(call.request, res, received, performance.now() - started);
        },
        (err: unknown) => {
          model.release();
          callback(fail(status.INTERNAL, `inference failed (${model.label}): ${messageOf(err)}`));
          hooks.onError?.('Recommend', status.INTERNAL, v);
        },
      );
    },

    Feedback(call, callback) {
      const received = Date.now();
      const problem = feedbackProblem(call.request, DEFAULT_LIMITS);
      if (problem) {
        hooks.onError?.('Feedback', status.INVALID_ARGUMENT, slot.active?.version);
        return callback(fail(status.INVALID_ARGUMENT, problem));
      }
      hooks.onFeedback?.(call.request, received);
      callback(null, {});
    },
  };
}
