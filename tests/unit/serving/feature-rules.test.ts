/** The online store's rules (serving/feature-rules.ts): interest, dataset event ids, popularity decay. */
import {
  DATASET_EVENT,
  HOUR_MS,
  bucketExpiresAt,
  datasetEventId,
  decayWeights,
  isInterest,
  popularityHour,
} from '../../../serving/feature-rules';
import { eventIdOf } from '../../../serving/recommender-core';
import { FEEDBACK_EVENTS } from '../../../lib/feedback-events';

describe('interest', () => {
  it('is a click, an add-to-cart, a purchase or a dataset interaction, whatever the value', () => {
    for (const e of ['FEEDBACK_EVENT_CLICK', 'FEEDBACK_EVENT_ADD_TO_CART', 'FEEDBACK_EVENT_PURCHASE', DATASET_EVENT])
      expect(isInterest(e, 0, 4)).toBe(true);
  });

  it('is a rating at or above the threshold only', () => {
    expect(isInterest('FEEDBACK_EVENT_RATING', 4, 4)).toBe(true);
    expect(isInterest('FEEDBACK_EVENT_RATING', 5, 4)).toBe(true);
    expect(isInterest('FEEDBACK_EVENT_RATING', 3.99, 4)).toBe(false);
    expect(isInterest('FEEDBACK_EVENT_RATING', 3, 3)).toBe(true);
  });

  it('is never an impression, a dismissal or an unknown event', () => {
    expect(isInterest('FEEDBACK_EVENT_IMPRESSION', 5, 4)).toBe(false);
    expect(isInterest('FEEDBACK_EVENT_DISMISS', 5, 4)).toBe(false);
    expect(isInterest('FEEDBACK_EVENT_UNSPECIFIED', 5, 4)).toBe(false);
    expect(isInterest('click', 5, 4)).toBe(false);
  });

  it('covers every event the serving tier accepts: exactly two are not interest', () => {
    expect(FEEDBACK_EVENTS.filter((e) => !isInterest(e, 5, 4))).toEqual([
      'FEEDBACK_EVENT_IMPRESSION',
      'FEEDBACK_EVENT_DISMISS',
    ]);
  });
});

describe('event ids', () => {
  it('of a dataset interaction depend on its content only, unambiguously', () => {
    expect(datasetEventId('u1', 'i1', 1000)).toBe(datasetEventId('u1', 'i1', 1000));
    expect(datasetEventId('u1', 'i1', 1000)).not.toBe(datasetEventId('u1', 'i1', 2000));
    // Separators inside ids cannot make two interactions look alike.
    expect(datasetEventId('u|1', 'i', 1)).not.toBe(datasetEventId('u', '1|i', 1));
    expect(datasetEventId('u","1', 'i', 1)).not.toBe(datasetEventId('u', '1","i', 1));
  });

  it('never collide with the ids of live feedback', () => {
    const live = {
      request_id: 'r1',
      user_id: 'u1',
      item_id: 'i1',
      event: 'FEEDBACK_EVENT_CLICK',
      timestamp_ms: 1000,
      value: 0,
      event_id: '',
    } as Parameters<typeof eventIdOf>[0];
    const ids = [datasetEventId('u1', 'i1', 1000), eventIdOf(live, 1000), eventIdOf({ ...live, event_id: 'x' }, 1000)];
    expect(ids.map((id) => id.slice(0, 2))).toEqual(['d:', 'r:', 'c:']);
  });
});

describe('popularity decay', () => {
  const now = 500_000 * HOUR_MS + 30 * 60_000; // half past hour 500000

  it('counts an event in the hour of its time, a future one now, and none beyond the window', () => {
    expect(popularityHour(now, now, 72)).toBe(500_000);
    expect(popularityHour(now - 2 * HOUR_MS, now, 72)).toBe(499_998);
    expect(popularityHour(now + 10 * HOUR_MS, now, 72)).toBe(500_000);
    expect(popularityHour(now - 71 * HOUR_MS, now, 72)).toBe(500_000 - 71);
    expect(popularityHour(now - 72 * HOUR_MS, now, 72)).toBeUndefined();
    expect(popularityHour(0, now, 72)).toBeUndefined();
  });

  it('lets a bucket expire once it is out of every window', () => {
    const hour = 500_000;
    expect(bucketExpiresAt(hour, 72)).toBe((hour + 73) * 3600);
    // The last read that includes `hour` happens during hour + 71.
    expect(bucketExpiresAt(hour, 72) * 1000).toBeGreaterThan((hour + 72) * HOUR_MS - 1);
  });

  it('weighs the window newest first, halving every half-life', () => {
    const w = decayWeights(now, { windowHours: 48, halfLifeHours: 12 });
    expect(w).toHaveLength(48);
    expect(w.map((b) => b.hour)).toEqual(Array.from({ length: 48 }, (_, i) => 500_000 - i));
    expect(w[0]!.weight).toBe(1); // the middle of the current hour is now
    expect(w[12]!.weight).toBeCloseTo(0.5, 10);
    expect(w[24]!.weight).toBeCloseTo(0.25, 10);
    for (let i = 1; i < w.length; i++) expect(w[i]!.weight).toBeLessThan(w[i - 1]!.weight);
    expect(w.every((b) => b.weight > 0 && b.weight <= 1)).toBe(true);
  });

  it('never weighs the current hour above 1 early in the hour', () => {
    const early = 500_000 * HOUR_MS + 60_000;
    expect(decayWeights(early, { windowHours: 2, halfLifeHours: 1 })[0]!.weight).toBe(1);
  });
});
