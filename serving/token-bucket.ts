/**
 * A token bucket that bounds the expensive path's request rate: `ratePerSecond` tokens accrue per second up to
 * `burst`, one request takes one token, and when none is left the caller serves the cheap answer instead. So over
 * any window of t seconds from the start at most `ratePerSecond * t + burst` requests get a token, under any load.
 *
 * Refill is lazy (computed from the clock when asked, no timers) and exact: the level is never accumulated step by
 * step, where rounding errors would pile up over millions of requests. It is kept as an anchor — the level
 * `anchorLevel` at time `anchorMs` — plus the integer count of tokens taken since, and computed in thousandths of a
 * token as `anchorLevel·1000 + elapsedMs·ratePerSecond − taken·1000`. With integer (or dyadic) clock readings, rate
 * and burst every term is an exact integer, so a token is granted exactly when the true level reaches 1; otherwise
 * the only error is one rounding of one product, not a sum of them. The anchor moves only when the bucket is full
 * (the level is then exactly `burst`, whatever happened before).
 */

export class TokenBucketConfigError extends Error {
  override readonly name = 'TokenBucketConfigError';
  constructor(
    readonly field: 'ratePerSecond' | 'burst',
    readonly value: number,
    reason: string,
  ) {
    super(`token bucket ${field} ${reason} (value: ${String(value)})`);
  }
}

export class TokenBucket {
  private readonly burstMilli: number;
  /** Clock reading (ms) the level is anchored at; the latest reading seen is `lastMs` (a clock never runs back). */
  private anchorMs: number;
  private lastMs: number;
  /** Level at the anchor, in thousandths of a token. */
  private anchorMilli: number;
  /** Tokens taken since the anchor. */
  private taken = 0;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    /** Milliseconds from any origin, non-decreasing (a reading earlier than the last one counts as the last one). */
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0)
      throw new TokenBucketConfigError('ratePerSecond', ratePerSecond, 'must be a finite number above 0');
    if (!Number.isFinite(burst) || burst < 1)
      throw new TokenBucketConfigError('burst', burst, 'must be a finite number of at least 1');
    this.burstMilli = burst * 1000;
    this.anchorMs = this.lastMs = now();
    this.anchorMilli = this.burstMilli; // starts full
  }

  /** Takes one token if one is available now; false (and nothing taken) when the bucket holds less than one. */
  tryTake(): boolean {
    if (this.levelMilli() < 1000) return false;
    this.taken += 1;
    return true;
  }

  /** Tokens available now (fractional), for metrics. */
  available(): number {
    return this.levelMilli() / 1000;
  }

  /** The level now, in thousandths of a token, capped at burst (re-anchoring there, as a full bucket forgets). */
  private levelMilli(): number {
    const t = Math.max(this.now(), this.lastMs);
    this.lastMs = t;
    const level = this.anchorMilli + (t - this.anchorMs) * this.ratePerSecond - this.taken * 1000;
    if (level < this.burstMilli) return level;
    this.anchorMs = t;
    this.anchorMilli = this.burstMilli;
    this.taken = 0;
    return this.burstMilli;
  }
}
