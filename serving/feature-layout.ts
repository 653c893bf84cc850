/**
 * How the online feature store lays its data out in Redis: key names and the encoding of one recorded event. Pure
 * functions, shared by the store (redis-store.ts), the backfill and the tests, so the layout is written down once.
 *
 * Every key starts with `recsys:{<dataset>}:`. The dataset name (the catalogue's domain) namespaces the data: every
 * model and version of one catalogue reads the same histories, two catalogues never mix. The braces are a Redis
 * Cluster hash tag: all keys of one catalogue hash to one slot, which the write script needs (it touches the user's
 * list, the dedupe marker and a popularity bucket atomically). The price is that a catalogue lives on one shard.
 *
 *   recsys:{<ds>}:h:<user>      LIST  the user's interest events (click, add-to-cart, purchase, good rating), newest
 *                                     first, at most N, TTL refreshed on each write. What Recommend reads.
 *   recsys:{<ds>}:x:<user>      LIST  the user's other events (impressions, dismissals, low ratings): same shape and
 *                                     cap, kept apart so they never push interest out of the history.
 *   recsys:{<ds>}:e:<eventId>   STRING a dedupe marker per event id, with its own TTL.
 *   recsys:{<ds>}:p:<hour>      ZSET  interest events per item in one hour (hours since the epoch, by event time),
 *                                     expiring once the hour has left the popularity window.
 *   recsys:{<ds>}:p:union       ZSET  scratch key of the popularity script, deleted in the same script.
 *
 * A list entry is a JSON array `[timeMs, event, value, itemId, eventId]`: the time first so the Lua script can read
 * it with a pattern, the event id last so that two entries are equal exactly when they record the same event.
 */
import { DATASET_NAME } from '../lib/dataset/ref';

const PREFIX = 'recsys';

/** Refuses what would break the hash tag or the layout (a dataset name never does). */
export function checkNamespace(namespace: string): string {
  if (!DATASET_NAME.test(namespace))
    throw new Error(
      `online store namespace ${JSON.stringify(namespace)} must be a dataset name ${String(DATASET_NAME)}`,
    );
  return namespace;
}

const base = (namespace: string) => `${PREFIX}:{${checkNamespace(namespace)}}:`;

export const featureKeys = {
  /** The user's interest events (the history Recommend reads). */
  history: (namespace: string, userId: string): string => `${base(namespace)}h:${userId}`,
  /** The user's other events (impressions, dismissals, ratings below the threshold). */
  other: (namespace: string, userId: string): string => `${base(namespace)}x:${userId}`,
  /** The marker that an event id was recorded. */
  seen: (namespace: string, eventId: string): string => `${base(namespace)}e:${eventId}`,
  /** Interest per item during one hour (hours since the Unix epoch). */
  popularity: (namespace: string, hour: number): string => `${base(namespace)}p:${hour}`,
  /** The popularity script's scratch key. */
  popularityUnion: (namespace: string): string => `${base(namespace)}p:union`,
  /** Every key of a namespace, for SCAN (tests, operators). */
  pattern: (namespace: string): string => `${base(namespace)}*`,
};

/** One list entry as it is stored. */
export interface EventEntry {
  timeMs: number;
  event: string;
  value: number;
  itemId: string;
  eventId: string;
}

export function encodeEntry(e: EventEntry): string {
  return JSON.stringify([e.timeMs, e.event, e.value, e.itemId, e.eventId]);
}

/** The entry, or undefined for anything that is not one (never thrown: a bad entry is skipped on the read path). */
export function decodeEntry(raw: string): EventEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 5) return undefined;
  const [timeMs, event, value, itemId, eventId] = v as unknown[];
  if (typeof timeMs !== 'number' || typeof event !== 'string' || typeof value !== 'number') return undefined;
  if (typeof itemId !== 'string' || typeof eventId !== 'string') return undefined;
  return { timeMs, event, value, itemId, eventId };
}
