/**
 * The online store's rules, as pure functions: which events mean interest, how a dataset interaction is named when
 * the backfill loads it, and how item popularity decays.
 *
 * Popularity: interest events are counted per item in hourly buckets (one ZSET per hour, by event time). Reading
 * combines the buckets of the last `windowHours` with exponential weights 2^(-age / halfLife), the age measured from
 * the middle of each hour. Hourly buckets bound the error of that age to half an hour and let each bucket expire on
 * its own once it leaves the window (no sweeper, no read-modify-write of a decayed score); the half-life keeps the
 * counter "rolling" smoothly instead of falling off a cliff at the window's edge. An event older than the window
 * counts nothing (its weight would be below 2^(-window/halfLife) anyway), and an event stamped in the future counts in
 * the current hour, so a client's clock cannot push an item to the top of a bucket nobody reads yet.
 */

/** The interest events besides ratings (a rating means interest at or above the threshold). */
const ALWAYS_INTEREST = new Set(['FEEDBACK_EVENT_CLICK', 'FEEDBACK_EVENT_ADD_TO_CART', 'FEEDBACK_EVENT_PURCHASE']);
export const RATING_EVENT = 'FEEDBACK_EVENT_RATING';
/**
 * The event name of an interaction loaded from a dataset by the backfill. Every interaction of a dataset is a
 * positive for training (training ignores ratings), so it means interest here too: that is what makes a backfilled
 * store serve the same histories as the dataset.
 */
export const DATASET_EVENT = 'DATASET_INTERACTION';

/** True for the events that belong in the history Recommend reads. Impressions and dismissals are not interest. */
export function isInterest(event: string, value: number, ratingThreshold: number): boolean {
  if (ALWAYS_INTEREST.has(event) || event === DATASET_EVENT) return true;
  return event === RATING_EVENT && value >= ratingThreshold;
}

/**
 * The event id of a dataset interaction: its content only (user, item, time), not the dataset version, so loading
 * v1 then v2 (which contains v1's rows) records each interaction once, and a rerun changes nothing.
 */
export function datasetEventId(userId: string, itemId: string, timeMs: number): string {
  return `d:${JSON.stringify([userId, itemId, timeMs])}`;
}

export const HOUR_MS = 3_600_000;

export interface DecayConfig {
  /** How many hourly buckets a read combines (and how long a bucket lives after its hour). */
  windowHours: number;
  halfLifeHours: number;
}

/**
 * The hour an interest event counts in, or undefined when it is older than the window. Future times count now.
 */
export function popularityHour(timeMs: number, nowMs: number, windowHours: number): number | undefined {
  const hour = Math.floor(Math.min(timeMs, nowMs) / HOUR_MS);
  const current = Math.floor(nowMs / HOUR_MS);
  return current - hour < windowHours ? hour : undefined;
}

/** When a bucket key may go: once its hour is out of every window (Unix seconds, for EXPIREAT). */
export function bucketExpiresAt(hour: number, windowHours: number): number {
  return (hour + 1 + windowHours) * 3600;
}

/** The buckets a read at `nowMs` combines, newest first, each with its weight in (0, 1]. */
export function decayWeights(nowMs: number, cfg: DecayConfig): { hour: number; weight: number }[] {
  const current = Math.floor(nowMs / HOUR_MS);
  const out: { hour: number; weight: number }[] = [];
  for (let i = 0; i < cfg.windowHours; i++) {
    const hour = current - i;
    const ageHours = Math.max(0, (nowMs - (hour + 0.5) * HOUR_MS) / HOUR_MS);
    out.push({ hour, weight: Math.min(1, 2 ** (-ageHours / cfg.halfLifeHours)) });
  }
  return out;
}
