/**
 * Connects the service's hooks to the request log and the metrics: one record per answered Recommend and per accepted
 * Feedback, counters and latency per model version. Runs on the request path: builds a record and appends it, no I/O.
 */
import type { ModelSlot } from './model-slot';
import type { ServingMetrics } from './metrics';
import type { RequestLog } from './request-log';
import type { ServiceHooks } from './service';

export function telemetryHooks(opts: { slot: ModelSlot; log?: RequestLog; metrics?: ServingMetrics }): ServiceHooks {
  const { slot, log, metrics } = opts;
  return {
    onRecommend(req, res, receivedAtMs, latencyMs) {
      const model = res.model_name;
      const version = res.model_version;
      const reason = res.fallback ? res.fallback_reason : undefined;
      metrics?.forVersion('Recommend', model, version).served(latencyMs, reason);
      log?.append({
        kind: 'recommend',
        record: {
          time_ms: receivedAtMs,
          request_id: res.request_id,
          user_id: req.user_id,
          history_len: req.history.length,
          items: res.items, // fresh per request and never changed after the answer: no copy needed
          model_name: model,
          model_version: version,
          dataset_name: res.dataset_name,
          dataset_version: res.dataset_version,
          latency_ms: latencyMs,
          fallback: res.fallback,
          fallback_reason: res.fallback_reason,
        },
      });
    },

    onFeedback(event, receivedAtMs) {
      // The version that serves this user under the current policy: the one whose recommendation the feedback is about.
      const v = slot.pick(event.user_id)?.version;
      metrics?.forVersion('Feedback', v?.name ?? '', v?.version ?? '').served(undefined, undefined);
      log?.append({
        kind: 'feedback',
        record: {
          time_ms: receivedAtMs,
          request_id: event.request_id,
          user_id: event.user_id,
          item_id: event.item_id,
          event: event.event,
          event_time_ms: event.timestamp_ms || receivedAtMs,
          value: event.value,
          model_name: v?.name ?? '',
          model_version: v?.version ?? '',
        },
      });
    },

    onError(method, code, model) {
      metrics?.forVersion(method, model?.name ?? '', model?.version ?? '').failed(code);
    },
  };
}
