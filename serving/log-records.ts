/**
 * What the request and feedback logs hold, one JSON object per line. Field names follow the proto (snake_case) so a
 * log line reads like the call it records; `time` is ISO-8601 UTC and `time_ms` the same instant in epoch ms.
 */
import type { FallbackReason, FeedbackEvent } from './proto';

export type LogKind = 'recommend' | 'feedback';

export interface RecommendLogRecord {
  time_ms: number;
  request_id: string;
  user_id: string;
  history_len: number;
  items: { item_id: string; score: number }[];
  model_name: string;
  model_version: string;
  dataset_name: string;
  dataset_version: string;
  latency_ms: number;
  fallback: boolean;
  fallback_reason: FallbackReason;
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
  /** The version serving when the feedback arrived (feedback itself names no model); '' when none was loaded. */
  model_name: string;
  model_version: string;
}

/** One buffered line: where it goes (kind, model, hour from time_ms) and what it says. */
export type LogEntry =
  { kind: 'recommend'; record: RecommendLogRecord } | { kind: 'feedback'; record: FeedbackLogRecord };
