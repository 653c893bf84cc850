/**
 * The recsys.v1.Recommender handlers: validate, take the active version once (so a swap mid-request cannot mix two
 * versions), rank, answer with the lineage. Nothing is logged per request; failures go back to the caller as
 * status codes (INVALID_ARGUMENT, UNAVAILABLE, INTERNAL) and the server keeps serving.
 */
import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { messageOf } from './errors';
import type { ModelSlot } from './model-slot';
import type { FeedbackRequest, RecommenderHandlers } from './proto';
import { recommend } from './recommend';
import { DEFAULT_LIMITS, feedbackProblem, recommendProblem } from './validate';

/** Where served requests and feedback go besides the response (request and feedback logs plug in here later). */
export interface ServiceHooks {
  onFeedback?(event: FeedbackRequest, receivedAtMs: number): void;
}

const fail = (code: status, details: string): Partial<ServiceError> => ({ code, details });

export function recommenderHandlers(slot: ModelSlot, hooks: ServiceHooks = {}): RecommenderHandlers {
  return {
    Recommend(call, callback) {
      const model = slot.active;
      if (!model) return callback(fail(status.UNAVAILABLE, 'no model version is loaded yet'));
      const problem = recommendProblem(call.request, model.limits);
      if (problem) return callback(fail(status.INVALID_ARGUMENT, problem));
      const v = model.version;
      model.acquire();
      recommend(model, call.request).then(
        (r) => {
          model.release();
          callback(null, {
            items: r.items,
            model_name: v.name,
            model_version: v.version,
            dataset_name: v.dataset.name,
            dataset_version: v.dataset.version,
            request_id: randomUUID(),
            fallback: r.fallback,
            fallback_reason: r.fallbackReason,
          });
        },
        (err: unknown) => {
          model.release();
          callback(fail(status.INTERNAL, `inference failed (${model.label}): ${messageOf(err)}`));
        },
      );
    },

    Feedback(call, callback) {
      const received = Date.now();
      const problem = feedbackProblem(call.request, DEFAULT_LIMITS);
      if (problem) return callback(fail(status.INVALID_ARGUMENT, problem));
      hooks.onFeedback?.(call.request, received);
      callback(null, {});
    },
  };
}
