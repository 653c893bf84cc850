/**
 * The serving tier's view of the online feature store: per user the recent interactions that Feedback recorded, per
 * item a decayed popularity. Keys are namespaced by dataset name (the catalogue's domain), so every version of one
 * catalogue reads the same histories and two catalogues never mix. The Redis implementation is serving/redis-store.ts;
 * unit tests use their own. Neither method may throw on the request path: a store that is down or slow answers
 * `unavailable`, and the caller falls back.
 */
import type { TimedItem } from './history';

/** One event as the store records it. `eventId` makes a retried event count once. */
export interface StoreEvent {
  eventId: string;
  userId: string;
  itemId: string;
  /** The FeedbackEvent name, e.g. FEEDBACK_EVENT_CLICK. */
  event: string;
  timeMs: number;
  /** A rating, a price, a watch time; 0 when absent. */
  value: number;
}

export type HistoryRead =
  /** The user's recent interactions that mean interest, oldest first (possibly none). */
  | { status: 'ok'; items: TimedItem[] }
  /** The store did not answer in time or failed: the caller falls back and says so. */
  | { status: 'unavailable'; reason: string };

export type RecordOutcome = { status: 'recorded'; duplicate: boolean } | { status: 'unavailable'; reason: string };

export interface OnlineStore {
  /** One round trip, bounded by the store's timeout. */
  recentHistory(namespace: string, userId: string): Promise<HistoryRead>;
  /** Pipelined; one outcome per event, in order. Idempotent by eventId. */
  record(namespace: string, events: readonly StoreEvent[]): Promise<RecordOutcome[]>;
  /**
   * Items by recent interest, best first, from a cache: never waits (a stale cache refreshes in the background).
   * Undefined when there is nothing recent to give; the popularity fallback then uses the training data's.
   */
  cachedPopular?(namespace: string): readonly { itemId: string; score: number }[] | undefined;
  close(): Promise<void>;
}
