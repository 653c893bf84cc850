/**
 * The serving tier's Prometheus metrics, in a Registry of their own (not prom-client's global one, so tests and
 * several servers in one process do not share counters). Per-version label sets are resolved once and cached, so
 * recording a request costs a map lookup and a few additions, not a label hash per metric.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { status } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { LogKind } from './log-records';
import type { LogShippingObserver } from './request-log';

/**
 * Seconds, Prometheus' unit: 50 µs to 5 s, with most resolution where an in-process ranking lands and a few coarse
 * buckets above 100 ms so that a slow version (overload, an injected latency) still has a p99 a canary can compare.
 */
export const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25,
  0.5, 1, 2.5, 5,
];

/** `FEEDBACK_EVENT_CLICK` -> `click`: the event label of the feedback counters. */
export const feedbackEventLabel = (event: string): string => event.replace(/^FEEDBACK_EVENT_/, '').toLowerCase();

import type { Method } from './recommender-core';

/** What a handler records for one version; `model`/`version` are '' when no version was loaded. */
export interface VersionMetrics {
  /** `latencyMs` undefined: count the call without timing it (Feedback is not timed). */
  served(latencyMs: number | undefined, fallbackReason: string | undefined): void;
  failed(code: status): void;
}

export class ServingMetrics implements LogShippingObserver {
  readonly registry = new Registry();
  private readonly latency: Histogram<'method' | 'model' | 'version'>;
  private readonly requests: Counter<'method' | 'model' | 'version'>;
  private readonly errors: Counter<'method' | 'model' | 'version' | 'code'>;
  private readonly fallbacks: Counter<'model' | 'version' | 'reason'>;
  private readonly logRecords: Counter<'kind'>;
  private readonly logSpilled: Counter<'kind'>;
  private readonly logUploadFailures: Counter;
  private readonly byVersion = new Map<string, VersionMetrics>();
  private readonly eligible: Counter<'model' | 'version'>;
  private readonly feedbackEvents: Counter<'model' | 'version' | 'event'>;
  private readonly feedbackUnattributed: Counter<'event'>;
  private readonly storeUnavailable: Counter<'operation'>;
  private readonly historySources: Counter<'method' | 'source'>;
  private readonly stageLatency: Histogram<'model' | 'version' | 'stage'>;
  private readonly routes: Counter<'model' | 'version' | 'route'>;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.latency = new Histogram({
      name: 'recsys_request_duration_seconds',
      help: 'Time from receiving a call to answering it, by method and model version.',
      labelNames: ['method', 'model', 'version'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.requests = new Counter({
      name: 'recsys_requests_total',
      help: 'Calls answered successfully, by method and model version.',
      labelNames: ['method', 'model', 'version'],
      registers,
    });
    this.errors = new Counter({
      name: 'recsys_request_errors_total',
      help: 'Calls answered with an error, by method, model version and gRPC status.',
      labelNames: ['method', 'model', 'version', 'code'],
      registers,
    });
    this.fallbacks = new Counter({
      name: 'recsys_fallbacks_total',
      help: 'Recommend calls answered by the popularity fallback, by model version and reason.',
      labelNames: ['model', 'version', 'reason'],
      registers,
    });
    this.logRecords = new Counter({
      name: 'recsys_log_records_shipped_total',
      help: 'Request and feedback log records uploaded to the object store.',
      labelNames: ['kind'],
      registers,
    });
    this.logSpilled = new Counter({
      name: 'recsys_log_chunks_spilled_total',
      help: 'Log chunks written to the local spill directory (every sealed chunk, before it is uploaded).',
      labelNames: ['kind'],
      registers,
    });
    this.logUploadFailures = new Counter({
      name: 'recsys_log_upload_failures_total',
      help: 'Failed attempts to upload a log chunk (each is retried).',
      registers,
    });
    this.eligible = new Counter({
      name: 'recsys_feedback_eligible_total',
      help: 'Recommend answers that feedback can refer to (by request_id), by model version: the CTR denominator.',
      labelNames: ['model', 'version'],
      registers,
    });
    this.feedbackEvents = new Counter({
      name: 'recsys_feedback_total',
      help: 'Feedback events attributed to the version that served the request_id they name, by event.',
      labelNames: ['model', 'version', 'event'],
      registers,
    });
    this.feedbackUnattributed = new Counter({
      name: 'recsys_feedback_unattributed_total',
      help: 'Feedback events whose request_id is empty, unknown or too old to be remembered, by event.',
      labelNames: ['event'],
      registers,
    });
    this.storeUnavailable = new Counter({
      name: 'recsys_online_store_unavailable_total',
      help: 'Online store reads (Recommend) and writes (Feedback) that failed or timed out; the call was answered anyway.',
      labelNames: ['operation'],
      registers,
    });
    this.historySources = new Counter({
      name: 'recsys_history_source_total',
      help: 'Recommend answers by where the history came from (request, online_store, dataset, none).',
      labelNames: ['method', 'source'],
      registers,
    });
    this.stageLatency = new Histogram({
      name: 'recsys_stage_duration_seconds',
      help: "Inference time of each stage that ran (model, or a cascade's recall, rank, rerank), by model version.",
      labelNames: ['model', 'version', 'stage'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.routes = new Counter({
      name: 'recsys_routes_total',
      help:
        'Recommend answers by route: single, fallback, or for a cascade cheap (confident), cascade (expensive path) ' +
        'and cheap-budget (not confident, budget spent).',
      labelNames: ['model', 'version', 'route'],
      registers,
    });
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** The recorder for one method and version; cached, so call it per request. */
  forVersion(method: Method, model: string, version: string): VersionMetrics {
    const cacheKey = `${method}\0${model}\0${version}`;
    let m = this.byVersion.get(cacheKey);
    if (!m) {
      const latency = this.latency.labels(method, model, version);
      const requests = this.requests.labels(method, model, version);
      const fallbacks = new Map<string, Counter.Internal>();
      const errors = new Map<status, Counter.Internal>();
      m = {
        served: (latencyMs, reason) => {
          if (latencyMs !== undefined) latency.observe(latencyMs / 1000);
          requests.inc();
          if (reason === undefined) return;
          let f = fallbacks.get(reason);
          if (!f) fallbacks.set(reason, (f = this.fallbacks.labels(model, version, reason)));
          f.inc();
        },
        failed: (code) => {
          let e = errors.get(code);
          if (!e) errors.set(code, (e = this.errors.labels(method, model, version, grpcStatus[code] ?? String(code))));
          e.inc();
        },
      };
      this.byVersion.set(cacheKey, m);
    }
    return m;
  }

  /** A Recommend answer whose request_id was remembered for feedback attribution. */
  recommended(model: string, version: string): void {
    this.eligible.labels(model, version).inc();
  }

  /** A feedback event, attributed to the version that served its request, or unattributed when that is unknown. */
  feedback(event: string, served: { model: string; version: string } | undefined): void {
    const label = feedbackEventLabel(event);
    if (served) this.feedbackEvents.labels(served.model, served.version, label).inc();
    else this.feedbackUnattributed.labels(label).inc();
  }

  /** The online store failed a read or a write (the call was answered from the fallback). */
  storeFailed(operation: 'read' | 'write'): void {
    this.storeUnavailable.labels(operation).inc();
  }

  /** Where an answer's history came from (`HISTORY_SOURCE_ONLINE_STORE` -> `online_store`). */
  historySource(method: Method, source: string): void {
    this.historySources.labels(method, source.replace(/^HISTORY_SOURCE_/, '').toLowerCase()).inc();
  }

  /** An answer's route and the latency of each stage that produced it. */
  routed(model: string, version: string, route: string, stages: readonly { name: string; latency_ms: number }[]): void {
    this.routes.labels(model, version, route || 'single').inc();
    for (const s of stages) this.stageLatency.labels(model, version, s.name).observe(s.latency_ms / 1000);
  }

  shipped(kind: LogKind, records: number): void {
    this.logRecords.labels(kind).inc(records);
  }

  spilled(kind: LogKind): void {
    this.logSpilled.labels(kind).inc();
  }

  uploadFailed(): void {
    this.logUploadFailures.inc();
  }

  /** The exposition text, as /metrics serves it. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
