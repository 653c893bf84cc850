/**
 * Connects the service's hooks to the request log and the metrics: one record per answered Recommend and per accepted
 * Feedback, counters and latency per model version. Runs on the request path: builds a record and appends it, no I/O.
 * A recommend record carries the last HISTORY_LOG_ITEMS item ids of the request's history (bounded: a copy of at most
 * that many ids per request), so drift monitors see the popularity of what is requested.
 * Feedback is attributed to the version that served the request_id it names (recent-requests.ts); feedback about a
 * request that is unknown or forgotten counts as unattributed and is logged with the version serving the user now.
 */
import type { TimedItem } from './history';
import { HISTORY_LOG_ITEMS } from './log-records';
import type { ModelPool } from './model-pool';
import type { ServingMetrics } from './metrics';
import { RecentRequests } from './recent-requests';
import type { RequestLog } from './request-log';
import type { ServiceHooks } from './recommender-core';

/**
 * The item ids of the `n` most recent entries of `history`, most recent last, in the order the server reads a history
 * (history.ts: by timestamp, stable, so a history without timestamps is taken as sent). Allocates only the result:
 * an ordered history (the usual case) is a slice of its tail; an unordered one is scanned once, keeping the n most
 * recent positions in a small sorted buffer.
 */
export function lastHistoryItems(history: readonly TimedItem[], n = HISTORY_LOG_ITEMS): string[] {
  const len = history.length;
  let ordered = true;
  for (let i = 1; i < len && ordered; i++) ordered = history[i]!.timestamp_ms >= history[i - 1]!.timestamp_ms;
  const take = Math.min(n, len);
  const out = new Array<string>(take);
  if (ordered || take === 0) {
    for (let j = 0; j < take; j++) out[j] = history[len - take + j]!.item_id;
    return out;
  }
  // Positions of the `take` latest entries by (timestamp, position), kept sorted oldest first.
  const latest: number[] = [];
  const before = (a: number, b: number) =>
    history[a]!.timestamp_ms < history[b]!.timestamp_ms ||
    (history[a]!.timestamp_ms === history[b]!.timestamp_ms && a < b);
  for (let i = 0; i < len; i++) {
    if (latest.length === take && before(i, latest[0]!)) continue;
    if (latest.length === take) latest.shift();
    let at = latest.length;
    while (at > 0 && before(i, latest[at - 1]!)) at--;
    latest.splice(at, 0, i);
  }
  for (let j = 0; j < take; j++) out[j] = history[latest[j]!]!.item_id;
  return out;
}

export function telemetryHooks(opts: {
  slot: ModelPool;
  log?: RequestLog;
  metrics?: ServingMetrics;
  /** request_id -> version of recent answers (default: 100,000 remembered). */
  recent?: RecentRequests;
}): ServiceHooks {
  const { slot, log, metrics } = opts;
  const recent = opts.recent ?? new RecentRequests();
  return {
    onRecommend(req, res, receivedAtMs, latencyMs, method) {
      const model = res.model_name;
      const version = res.model_version;
      const reason = res.fallback ? res.fallback_reason : undefined;
      metrics?.forVersion(method, model, version).served(latencyMs, reason);
      metrics?.historySource(method, res.history_source);
      metrics?.routed(model, version, res.route, res.stages);
      recent.remember(res.request_id, model, version);
      metrics?.recommended(model, version);
      log?.append({
        kind: 'recommend',
        record: {
          time_ms: receivedAtMs,
          request_id: res.request_id,
          user_id: req.user_id,
          history_len: req.history.length,
          history_items: lastHistoryItems(req.history),
          items: res.items, // fresh per request and never changed after the answer: no copy needed
          model_name: model,
          model_version: version,
          dataset_name: res.dataset_name,
          dataset_version: res.dataset_version,
          latency_ms: latencyMs,
          fallback: res.fallback,
          fallback_reason: res.fallback_reason,
          history_source: res.history_source,
          route: res.route,
          stages: res.stages.map((s) => ({ name: s.name, latency_ms: s.latency_ms })),
        },
      });
    },

    onFeedback(event, receivedAtMs, method) {
      // The version that answered the request the feedback names; else the one serving this user under the policy.
      const served = recent.servedBy(event.request_id);
      const now = served ? undefined : slot.pick(event.user_id)?.version;
      const v = served ? { name: served.model, version: served.version } : now;
      metrics?.forVersion(method, v?.name ?? '', v?.version ?? '').served(undefined, undefined);
      metrics?.feedback(event.event, served);
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
          event_id: event.event_id,
          model_name: v?.name ?? '',
          model_version: v?.version ?? '',
        },
      });
    },

    onStoreUnavailable(operation) {
      metrics?.storeFailed(operation);
    },

    onError(method, code, model) {
      metrics?.forVersion(method, model?.name ?? '', model?.version ?? '').failed(code);
    },
  };
}
