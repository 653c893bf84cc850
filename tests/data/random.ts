/**
 * Small seedable pseudo-random number generation for reproducible synthetic data.
 *
 * Why our own: `math.random()` cannot be seeded and `node:crypto` is neither seedable nor fast, while a synthetic
 * data set must be byte-identical for a given seed on every machine. No PRNG package is installed (`pure-rand` is
 * not a dependency), and the algorithms below are a few lines each, public domain and well studied:
 *
 * - sfc32 ("Small Fast Chaotic", Chris Doty-Humphrey, from PractRand): 128-bit state, passes PractRand and
 *   TestU01 BigCrush, and needs only 32-bit integer operations, which V8 runs natively. The 32-bit counter
 *   guarantees a period of at least 2^32 for every seed (typically ~2^127).
 * - splitmix32-style finalisers (the integer hash of Java's SplittableRandom / MurmurHash3's fmix32) turn a seed and
 *   any number of tags into well-mixed state words, so independent streams ("items", "user 17", ...) can be derived
 *   from one user-facing seed without the streams overlapping in practice.
 *
 * Everything here is deterministic: the same seed gives the same sequence on every platform (integer arithmetic is
 * exact; `math.log`, `math.sqrt`, `math.cos` are the same fdlibm ports in every V8 build we run).
 */

const TWO_POW_32 = 4294967296;

/**
 * `Math`, bound once: inside Jest's vm sandbox every lookup of the global `Math` goes through the context's global
 * object (~100 ns each), which made generation four times slower there than under plain Node.
 */
const math = Math;

/** MurmurHash3's 32-bit finaliser: a bijective avalanche mix of one 32-bit word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Hashes a seed and tags (integers; non-integers are truncated, values beyond 32 bits are folded in) into one 32-bit
 * seed. `hashSeed(seed, TAG_A)` and `hashSeed(seed, TAG_B, 7)` give unrelated streams.
 */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    const x = math.trunc(part);
    const lo = x >>> 0;
    const hi = math.floor(x / TWO_POW_32) >>> 0;
    h = fmix32((h ^ lo) + 0x7f4a7c15);
    h = fmix32((h ^ hi) + 0x165667b1);
  }
  return h;
}

/** A seeded sfc32 generator with the samplers the synthetic data generator needs. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal = 0;
  private hasSpareNormal = false;

  constructor(seed: number) {
    // Spread the seed over the 128-bit state with splitmix32-style increments, then discard the first outputs so
    // that nearby seeds diverge completely (as PractRand's reference seeding does).
    let s = hashSeed(seed);
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      return fmix32(s);
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** Next raw 32-bit unsigned integer (sfc32). */
  nextUint32(): number {
    const a = this.a;
    const b = this.b;
    const c = this.c;
    const d = this.d;
    const t = (((a + b) | 0) + d) | 0;
    this.d = (d + 1) | 0;
    this.a = b ^ (b >>> 9);
    this.b = (c + (c << 3)) | 0;
    const r = (c << 21) | (c >>> 11);
    this.c = (r + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** Uniform in (0, 1): never 0, safe for logarithms. */
  nextOpen(): number {
    return (this.nextUint32() + 0.5) / TWO_POW_32;
  }

  /** Uniform integer in [0, n) for 0 < n <= 2^32 (multiply-shift; the bias is < n / 2^32). */
  int(n: number): number {
    return math.floor(this.next() * n);
  }

  /** Standard normal (Box-Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.hasSpareNormal) {
      this.hasSpareNormal = false;
      return this.spareNormal;
    }
    const r = math.sqrt(-2 * math.log(this.nextOpen()));
    const theta = 2 * math.PI * this.next();
    this.spareNormal = r * math.sin(theta);
    this.hasSpareNormal = true;
    return r * math.cos(theta);
  }

  /** Exponential with mean 1. */
  exponential(): number {
    return -math.log(this.nextOpen());
  }

  /** Fisher-Yates shuffle in place. */
  shuffle(values: Int32Array | number[]): void {
    for (let i = values.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = values[i] as number;
      values[i] = values[j] as number;
      values[j] = tmp;
    }
  }
}
