/** The online store's options and reconnection backoff (no Redis needed; the store itself: tests/integration). */
import { ConfigError } from '../../../lib/errors';
import { onlineStoreSettings, reconnectDelayMs } from '../../../serving/redis-store';

describe('online store options', () => {
  it('has the documented defaults', () => {
    expect(onlineStoreSettings({ url: 'redis://127.0.0.1:6379' })).toMatchObject({
      timeoutMs: 25,
      historyLength: 50,
      ttlSeconds: 30 * 86_400,
      ratingThreshold: 4,
      popularityWindowHours: 72,
      popularityHalfLifeHours: 12,
      // At least the popularity window, so a retried event never counts twice there.
      dedupeTtlSeconds: 72 * 3600,
    });
  });

  it('refuses a bad option naming the field and the value', () => {
    const err = (input: Parameters<typeof onlineStoreSettings>[0]) => {
      try {
        onlineStoreSettings(input);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(err({ url: 'http://x' })).toMatch(/onlineStore\.url.*http:\/\/x/);
    expect(err({ url: 'redis://h', historyLength: 0 })).toMatch(/onlineStore\.historyLength.*0/);
    expect(err({ url: 'redis://h', timeoutMs: 2.5 })).toMatch(/onlineStore\.timeoutMs.*2\.5/);
    expect(err({ url: 'redis://h', dedupeTtlSeconds: 60 })).toMatch(/onlineStore\.dedupeTtlSeconds.*window.*value: 60/);
    expect(err({ url: 'redis://h', historyLen: 5 } as never)).toMatch(/onlineStore\.historyLen/);
  });
});

describe('reconnection backoff', () => {
  it('doubles from 50 ms up to 2 s, plus at most 100 ms of jitter, and never gives up', () => {
    const none = () => 0;
    expect([0, 1, 2, 3, 4, 5, 6].map((r) => reconnectDelayMs(r, none))).toEqual([50, 100, 200, 400, 800, 1600, 2000]);
    expect(reconnectDelayMs(1_000_000, none)).toBe(2000);
    expect(reconnectDelayMs(0, () => 0.999)).toBe(149);
  });
});
