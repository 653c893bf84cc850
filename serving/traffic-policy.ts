/**
 * Which loaded model version serves which user: weights per version, scaled to 100 buckets, and a sticky assignment
 * bucket = hash(salt, user id) mod 100. Pure (no I/O, no clock, no randomness), so the same user gets the same version
 * for as long as the policy is unchanged, in every process that holds it.
 *
 * Buckets are handed out to versions in sorted version order, cumulatively. With the salt kept across policy changes,
 * moving weight from one version to another moves only the users whose buckets change hands (a canary at 10% that
 * grows to 20% keeps its first 10% of users).
 */

export const BUCKETS = 100;
export const DEFAULT_SALT = 'recsys';

/** A policy that cannot be applied; `field` and `value` say which part of the request is wrong. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`${field} ${reason} (value: ${JSON.stringify(value)})`);
  }
}

/** 32-bit FNV-1a over UTF-16 code units: fast, stable across processes and platforms, and mixes well enough here. */
export function hashUser(salt: string, userId: string): number {
  let h = 0x811c9dc5;
  const mix = (s: string) => {
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  };
  mix(salt);
  h ^= 0xff; // separator, so ('ab', 'c') and ('a', 'bc') differ
  h = Math.imul(h, 0x01000193);
  mix(userId);
  // FNV's low bits are weak for short keys; a final avalanche (murmur3's fmix32) spreads them before the modulo.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export const bucketOf = (salt: string, userId: string): number => hashUser(salt, userId) % BUCKETS;

/**
 * Scales weights to integers summing to BUCKETS by largest remainder (ties to the smaller version, for determinism).
 * Checks each weight is a non-negative integer naming a loaded version and that they do not sum to 0.
 */
export function normaliseWeights(
  weights: Readonly<Record<string, number>>,
  loaded: ReadonlySet<string>,
): Map<string, number> {
  const versions = Object.keys(weights).sort(compareVersions);
  for (const v of versions) {
    const w = weights[v]!;
    const field = `weights[${JSON.stringify(v)}]`;
    if (!loaded.has(v))
      throw new PolicyError(
        field,
        v,
        `names a version that is not loaded (loaded: ${[...loaded].join(', ') || 'none'})`,
      );
    if (!Number.isInteger(w)) throw new PolicyError(field, w, 'must be an integer');
    if (w < 0) throw new PolicyError(field, w, 'must not be negative');
  }
  const total = versions.reduce((s, v) => s + weights[v]!, 0);
  if (total <= 0) throw new PolicyError('weights', weights, 'must sum to more than 0');
  const exact = versions.map((v) => ({ v, x: (weights[v]! * BUCKETS) / total }));
  const out = new Map(exact.map(({ v, x }) => [v, Math.floor(x)]));
  let left = BUCKETS - [...out.values()].reduce((s, n) => s + n, 0);
  const byRemainder = [...exact].sort((a, b) => b.x - Math.floor(b.x) - (a.x - Math.floor(a.x)));
  for (const { v } of byRemainder) {
    if (left-- <= 0) break;
    out.set(v, out.get(v)! + 1);
  }
  for (const [v, n] of out) if (n === 0) out.delete(v);
  return out;
}

/** Numeric order for registry versions ("2" before "10"), text order otherwise. */
export function compareVersions(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isInteger(na) && Number.isInteger(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

export class TrafficPolicy {
  /** Version of each bucket. */
  private readonly table: string[];

  private constructor(
    /** Percent per routed version, summing to BUCKETS; versions with 0 are absent. */
    readonly weights: ReadonlyMap<string, number>,
    readonly salt: string,
  ) {
    this.table = [];
    for (const [v, n] of weights) for (let i = 0; i < n; i++) this.table.push(v);
  }

  /** Validates `weights` against the loaded versions (PolicyError naming the field and value). */
  static of(weights: Readonly<Record<string, number>>, loaded: Iterable<string>, salt = DEFAULT_SALT): TrafficPolicy {
    return new TrafficPolicy(normaliseWeights(weights, new Set(loaded)), salt || DEFAULT_SALT);
  }

  /** All traffic to one version (what a single-model server does). */
  static only(version: string, salt = DEFAULT_SALT): TrafficPolicy {
    return new TrafficPolicy(new Map([[version, BUCKETS]]), salt || DEFAULT_SALT);
  }

  /** The version that serves `userId`. */
  pick(userId: string): string {
    return this.table[bucketOf(this.salt, userId)]!;
  }

  weightOf(version: string): number {
    return this.weights.get(version) ?? 0;
  }

  /** The version with the largest share (ties: the newest), e.g. what feedback without a request is attributed to. */
  get primary(): string {
    let best = '';
    let bestW = -1;
    for (const [v, w] of this.weights)
      if (w > bestW || (w === bestW && compareVersions(v, best) > 0)) [best, bestW] = [v, w];
    return best;
  }

  toJSON(): { weights: Record<string, number>; salt: string } {
    return { weights: Object.fromEntries(this.weights), salt: this.salt };
  }
}
