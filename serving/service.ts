/**
 * The recsys.v1.Recommender gRPC handlers: an adapter over RecommenderCore (recommender-core.ts), which the HTTP API
 * shares. Failures go back to the caller as status codes (INVALID_ARGUMENT, UNAVAILABLE, INTERNAL).
 */
import type { RecommenderHandlers } from './proto';
import type { RecommenderCore } from './recommender-core';

export function recommenderHandlers(core: RecommenderCore): RecommenderHandlers {
  return {
    Recommend(call, callback) {
      const started = performance.now();
      void core
        .recommend(call.request, 'Recommend', started)
        .then((r) => (r.ok ? callback(null, r.value) : callback({ code: r.code, details: r.message })));
    },
    Feedback(call, callback) {
      void core
        .feedback([call.request], 'Feedback')
        .then((r) => (r.ok ? callback(null, r.value[0]) : callback({ code: r.code, details: r.message })));
    },
  };
}
