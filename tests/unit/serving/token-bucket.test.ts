/** The expensive path's token bucket: refill arithmetic on an injected clock, the burst cap, and its config checks. */
import { TokenBucket, TokenBucketConfigError } from '../../../serving/token-bucket';

/** A clock the test moves by hand (milliseconds). */
function manualClock(startMs = 0) {
  let t = startMs;
  return {
    now: () => t,
    set: (ms: number) => {
      t = ms;
    },
    advance: (ms: number) => {
      t += ms;
    },
  };
}

const takeAll = (bucket: TokenBucket) => {
  let n = 0;
  while (bucket.tryTake()) n += 1;
  return n;
};

describe('token bucket', () => {
  test('starts full: burst tokens at once, then none until time passes', () => {
    const clock = manualClock(1_000);
    const bucket = new TokenBucket(2, 3, clock.now);
    expect(bucket.available()).toBe(3);
    expect(takeAll(bucket)).toBe(3);
    expect(bucket.available()).toBe(0);
    expect(bucket.tryTake()).toBe(false);
  });

  test('refills by elapsed time, fractional tokens included, and grants one exactly when the level reaches 1', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(2, 3, clock.now); // one token per 500 ms
    takeAll(bucket);
    clock.advance(125);
    expect(bucket.available()).toBe(0.25);
    clock.advance(374);
    expect(bucket.available()).toBe(0.998);
    expect(bucket.tryTake()).toBe(false); // 0.998 < 1, and a refused take costs nothing
    clock.advance(1);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.available()).toBe(0);
    clock.advance(750);
    expect(bucket.available()).toBe(1.5);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.available()).toBe(0.5);
  });

  test('a rate below one per second', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(0.5, 1, clock.now); // one token per 2 s
    expect(bucket.tryTake()).toBe(true);
    clock.set(1_999);
    expect(bucket.tryTake()).toBe(false);
    clock.set(2_000);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
  });

  test('a long idle spell fills the bucket to burst and no further', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(10, 4, clock.now);
    takeAll(bucket);
    clock.advance(3_600_000);
    expect(bucket.available()).toBe(4);
    expect(takeAll(bucket)).toBe(4);
    // The cap re-anchored the level: the next token comes 1/rate after the drain, not earlier.
    clock.advance(99);
    expect(bucket.tryTake()).toBe(false);
    clock.advance(1);
    expect(bucket.tryTake()).toBe(true);
  });

  test('a fractional burst caps the level at that fraction', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(1, 2.5, clock.now);
    expect(takeAll(bucket)).toBe(2);
    expect(bucket.available()).toBe(0.5);
    clock.advance(500);
    expect(bucket.tryTake()).toBe(true);
    clock.advance(60_000);
    expect(bucket.available()).toBe(2.5);
  });

  test('a clock that runs back gives no tokens and takes none away', () => {
    const clock = manualClock(10_000);
    const bucket = new TokenBucket(1, 1, clock.now);
    bucket.tryTake();
    clock.advance(600);
    expect(bucket.available()).toBe(0.6);
    clock.set(5_000);
    expect(bucket.available()).toBe(0.6);
    clock.set(10_600 + 400);
    expect(bucket.tryTake()).toBe(true);
  });

  test('no drift over a million polls: the count is exactly rate * t + burst', () => {
    // Polled every 1 ms for 1000 s at 7 tokens/s: 2 (the initial burst) + 7000 earned. (Burst 2, so the level,
    // drained at every poll where it reaches 1, never touches the cap, where earnings are rightly lost.)
    const clock = manualClock();
    const bucket = new TokenBucket(7, 2, clock.now);
    let taken = 0;
    for (let ms = 0; ms <= 1_000_000; ms++) {
      clock.set(ms);
      if (bucket.tryTake()) taken += 1;
    }
    expect(taken).toBe(7_002);
  });

  test('ten polls of a tenth of a token make a whole one, on time (0.1 added ten times is below 1 in binary)', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(1, 2, clock.now);
    takeAll(bucket);
    const grantedAt: number[] = [];
    for (let ms = 100; ms <= 60_000; ms += 100) {
      clock.set(ms);
      if (bucket.tryTake()) grantedAt.push(ms);
    }
    expect(grantedAt).toEqual(Array.from({ length: 60 }, (_, i) => (i + 1) * 1_000));
  });

  test('no drift on clock readings that are not exact in binary (0.1 ms steps)', () => {
    const clock = manualClock();
    const bucket = new TokenBucket(3, 2, clock.now);
    let taken = 0;
    for (let i = 0; i <= 100_000; i++) {
      clock.set(i / 10);
      if (bucket.tryTake()) taken += 1;
    }
    expect(taken).toBe(32); // 10 s at 3/s, plus the initial burst
  });

  test('invalid config throws naming the field and the value', () => {
    const reject = (rate: number, burst: number) => {
      try {
        new TokenBucket(rate, burst);
      } catch (err) {
        expect(err).toBeInstanceOf(TokenBucketConfigError);
        return err as TokenBucketConfigError;
      }
      throw new Error('accepted');
    };
    expect(reject(0, 1).message).toBe('token bucket ratePerSecond must be a finite number above 0 (value: 0)');
    expect(reject(-2, 1)).toMatchObject({ field: 'ratePerSecond', value: -2 });
    expect(reject(Number.NaN, 1)).toMatchObject({ field: 'ratePerSecond' });
    expect(reject(Infinity, 1).message).toMatch(/ratePerSecond .*\(value: Infinity\)/);
    expect(reject(5, 0.5).message).toBe('token bucket burst must be a finite number of at least 1 (value: 0.5)');
    expect(reject(5, Number.NaN)).toMatchObject({ field: 'burst' });
    expect(reject(5, Infinity)).toMatchObject({ field: 'burst', value: Infinity });
  });
});
