/**
 * What the request and feedback logs hold, one JSON object per line. Field names follow the proto (snake_case) so a
 * log line reads like the call it records; `time` is ISO-8601 UTC and `time_ms` the same instant in epoch ms.
 */
import type { FallbackReason, FeedbackEvent, HistorySource } from './proto';

export type LogKind = 'recommend' | 'feedback';

/**
 * How many of a request's history items a recommend record keeps (the most recent ones): enough for drift monitors
 * to see the popularity of what is requested, while a record stays small whatever history a caller sends.
 */
export const HISTORY_LOG_ITEMS = 20;

export interface RecommendLogRecord {
  time_ms: number;
  request_id: string;
  user_id: string;
  /** Items in the request's history (all of them, not only those logged in history_items). */
  history_len: number;
  /**
   * The last HISTORY_LOG_ITEMS item ids of the request's history, most recent last (in the order the server reads
   * it: by timestamp, stable). Records written before it existed lack it: read them with historyItemsOf.
   */
  history_items: string[];
  items: { item_id: string; score: number }[];
  model_name: string;
  model_version: string;
  dataset_name: string;
  dataset_version: string;
  latency_ms: number;
  fallback: boolean;
  fallback_reason: FallbackReason;
  /** Where the ranked history came from (the request, the online store, the dataset); absent in older records. */
  history_source?: HistorySource;
  /** single, fallback, or a cascade's cheap, cascade, cheap-budget (RecommendResponse.route); absent in older records. */
  route?: string;
  /** The stages that ran and their latency; absent in older records. */
  stages?: { name: string; latency_ms: number }[];
}

export interface FeedbackLogRecord {
  time_ms: number;
  request_id: string;
  user_id: string;
  item_id: string;
  event: FeedbackEvent;
  /** When the event happened as the caller says (0: when received). */
  event_time_ms: number;
  value: number;
  /** The caller's event id, '' when it sent none. */
  event_id?: string;
  /** The version serving when the feedback arrived (feedback itself names no model); '' when none was loaded. */
  model_name: string;
  model_version: string;
}

/**
 * A recommend record's history_items as readers should take it: chunks written before the field existed have none,
 * which means [] (nothing known), not an error.
 */
export function historyItemsOf(record: { history_items?: unknown }): string[] {
  const items = record.history_items;
  return Array.isArray(items) ? items.filter((i): i is string => typeof i === 'string') : [];
}

/** One buffered line: where it goes (kind, model, hour from time_ms; the environment is the log's) and what it says. */
export type LogEntry =
  { kind: 'recommend'; record: RecommendLogRecord } | { kind: 'feedback'; record: FeedbackLogRecord };
