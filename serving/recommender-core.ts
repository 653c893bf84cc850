/**
 * The Recommender's calls, whatever the protocol: validate, take the version that serves the user once (the pool's
 * traffic policy, sticky by user id; taken once so a swap or a policy change mid-request cannot mix two versions),
 * read the user's recent history from the online store when the request has none, rank, answer with the lineage, then
 * tell the hooks (request log, metrics). The gRPC service (service.ts) and the HTTP API (http/) are thin adapters over
 * it, so both share one model pool, one traffic policy, one request log and one set of metrics. A failure is a
 * result with a gRPC status code (each adapter maps it), never an exception, and the server keeps serving.
 */
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { messageOf } from './errors';
import { faultyRanker, type FaultTable } from './faults';
import type { ModelPool } from './model-pool';
import type { ServableVersion } from './model-version';
import type { OnlineStore, StoreEvent } from './online-store';
import type { FeedbackRequest, FeedbackResponse, RecommendRequest, RecommendResponse__Output } from './proto';
import { recommend, type OnlineReader, type Recommendation } from './recommend';
import { DEFAULT_LIMITS, feedbackProblem, recommendProblem } from './validate';

/** The `method` label of metrics: the gRPC method, or the HTTP route. */
export type Method = 'Recommend' | 'Feedback' | 'http_recommend' | 'http_events';

/**
 * Where served requests and feedback go besides the response (request and feedback logs, metrics: log-hooks.ts).
 * Hooks run on the request path, so they must be synchronous and cheap (an append to a buffer, a counter).
 */
export interface ServiceHooks {
  onFeedback?(event: FeedbackRequest, receivedAtMs: number, method: Method): void;
  /** After a Recommend answer is sent; `latencyMs` from receiving the call to answering it. */
  onRecommend?(
    req: RecommendRequest,
    res: RecommendResponse__Output,
    receivedAtMs: number,
    latencyMs: number,
    method: Method,
  ): void;
  /** After a call is answered with an error; `model` is the version that was asked, if one was loaded. */
  onError?(method: Method, code: status, model: ServableVersion | undefined): void;
  /** The online store could not be read or written (it is down or slow); the call was answered anyway. */
  onStoreUnavailable?(operation: 'read' | 'write', reason: string): void;
}

export type CallResult<T> = { ok: true; value: T } | { ok: false; code: status; message: string };

const failure = (code: status, message: string): CallResult<never> => ({ ok: false, code, message });

/** A Feedback event's identity in the online store: the client's event_id, else request + item + event + time. */
export function eventIdOf(e: FeedbackRequest, timeMs: number): string {
  if (e.event_id !== '') return `c:${e.event_id}`;
  return `r:${e.request_id}|${e.user_id}|${e.item_id}|${e.event}|${timeMs}`;
}

/** The response's route and stages: a cascade's own trace, one `model` stage for a single graph, none for popularity. */
function lineageOf(
  r: Recommendation,
  v: ServableVersion,
  rankMs: number,
): Pick<RecommendResponse__Output, 'route' | 'stages'> {
  if (r.fallback) return { route: 'fallback', stages: [] };
  if (r.trace)
    return {
      route: r.trace.route,
      stages: r.trace.stages.map((s) => ({ name: s.name, graph_sha256: s.graphSha256, latency_ms: s.ms })),
    };
  return { route: 'single', stages: [{ name: 'model', graph_sha256: v.onnxSha256, latency_ms: rankMs }] };
}

export interface CoreOptions {
  hooks?: ServiceHooks;
  /** Faults injected per version (a server started with --allow-faults), applied to that version only. */
  faults?: FaultTable;
  /** The online feature store; absent, history comes from the request or the dataset only. */
  store?: OnlineStore;
}

export class RecommenderCore {
  private readonly hooks: ServiceHooks;

  constructor(
    readonly pool: ModelPool,
    private readonly opts: CoreOptions = {},
  ) {
    this.hooks = opts.hooks ?? {};
  }

  /** The answer's `latencyMs` runs from `startedAt` (performance.now() when the call arrived). */
  async recommend(
    req: RecommendRequest,
    method: Method,
    startedAt = performance.now(),
  ): Promise<CallResult<RecommendResponse__Output>> {
    const { hooks } = this;
    const model = this.pool.pick(req.user_id);
    if (!model) {
      hooks.onError?.(method, status.UNAVAILABLE, undefined);
      return failure(status.UNAVAILABLE, 'no model version is loaded yet');
    }
    const v = model.version;
    const problem = recommendProblem(req, model.limits);
    if (problem) {
      hooks.onError?.(method, status.INVALID_ARGUMENT, v);
      return failure(status.INVALID_ARGUMENT, problem);
    }
    const received = Date.now();
    model.acquire();
    try {
      const fault = this.opts.faults?.get(v.version);
      const ranking = fault
        ? {
            catalog: model.catalog,
            excluded: model.excluded,
            ranker: faultyRanker(model.ranker, fault, model.catalog.nItems),
          }
        : model;
      const t0 = performance.now();
      const r = await recommend(ranking, req, this.opts.store && this.storeReader(v.dataset.name));
      const res: RecommendResponse__Output = {
        items: r.items,
        model_name: v.name,
        model_version: v.version,
        dataset_name: v.dataset.name,
        dataset_version: v.dataset.version,
        request_id: randomUUID(),
        fallback: r.fallback,
        fallback_reason: r.fallbackReason,
        history_source: r.historySource,
        online_store_degraded: r.storeDegraded,
        ...lineageOf(r, v, performance.now() - t0),
      };
      hooks.onRecommend?.(req, res, received, performance.now() - startedAt, method);
      return { ok: true, value: res };
    } catch (err) {
      hooks.onError?.(method, status.INTERNAL, v);
      return failure(status.INTERNAL, `inference failed (${model.label}): ${messageOf(err)}`);
    } finally {
      model.release();
    }
  }

  /** Validates every event first (none is recorded when one is invalid), then records them in one pipeline. */
  async feedback(events: readonly FeedbackRequest[], method: Method): Promise<CallResult<FeedbackResponse[]>> {
    const received = Date.now();
    for (const [i, e] of events.entries()) {
      const problem = feedbackProblem(e, DEFAULT_LIMITS);
      if (problem) {
        this.hooks.onError?.(method, status.INVALID_ARGUMENT, this.pool.active?.version);
        return failure(status.INVALID_ARGUMENT, events.length > 1 ? `events[${i}]: ${problem}` : problem);
      }
    }
    const out: FeedbackResponse[] = events.map(() => ({ recorded_online: false, duplicate: false }));
    const store = this.opts.store;
    // The catalogue's domain the events belong to: the dataset of the version serving each user.
    const namespace = this.pool.active?.version.dataset.name;
    if (store && namespace !== undefined) {
      const storeEvents: StoreEvent[] = events.map((e) => {
        const timeMs = e.timestamp_ms || received;
        return {
          eventId: eventIdOf(e, timeMs),
          userId: e.user_id,
          itemId: e.item_id,
          event: String(e.event),
          timeMs,
          value: e.value,
        };
      });
      const outcomes = await store.record(namespace, storeEvents);
      let unavailable: string | undefined;
      outcomes.forEach((o, i) => {
        if (o.status === 'recorded') out[i] = { recorded_online: true, duplicate: o.duplicate };
        else unavailable = o.reason;
      });
      if (unavailable !== undefined) this.hooks.onStoreUnavailable?.('write', unavailable);
    }
    // Logged whatever the store said: the feedback log is what training reads.
    for (const e of events) this.hooks.onFeedback?.(e, received, method);
    return { ok: true, value: out };
  }

  private storeReader(namespace: string): OnlineReader {
    const store = this.opts.store!;
    return {
      history: async (userId: string) => {
        const read = await store.recentHistory(namespace, userId);
        if (read.status === 'unavailable') this.hooks.onStoreUnavailable?.('read', read.reason);
        return read;
      },
      popular: () => store.cachedPopular?.(namespace),
    };
  }
}
