/**
 * Seeded synthetic interaction logs calibrated to MovieLens-1M, for scale tests, benchmarks and drift scenarios.
 *
 * The generative model (all of it derived from `seed`, so the same options give byte-identical output):
 *
 * - Catalogue. `items` items are spread over `clusters` latent topics of unequal size (think genres). Every item has
 *   a random popularity rank r with prior weight w(r) = (r + q)^-popularityExponent (Zipf-Mandelbrot, the head
 *   flattened over q = 1.35% of the catalogue) and a unit "taste" vector of 8 dimensions. Within a topic the items
 *   sit in a fixed order by (jittered) popularity; items within 3 places of each other are "related" (a franchise).
 * - Users. Each user prefers 1-4 topics (popular topics are preferred more often) with random weights, has a unit
 *   taste vector, a rating bias and an activity level. Interactions per user are `minPerUser` plus a log-normal excess
 *   (sigma 1.14), scaled so that the total is exactly round(interactions x volumeScale). A user never interacts with
 *   the same item twice, and with at most 75% of the catalogue.
 * - Choice of the next item. Within a session, with probability `sequentialStrength` the user moves to an item related
 *   to the previous one. Otherwise, with probability `preferenceStrength`, a topic is drawn from the user's
 *   preferences and an item of it with probability proportional to w x exp(tasteStrength x cos(user, item)); else an
 *   item is drawn from the global popularity prior. Items already seen are excluded exactly (conditional sampling).
 *   Topics and taste vectors are what a two-tower or MF model learns to beat popularity (with the defaults the
 *   planted model's HR@10 on each user's last item is ~3.5x popularity's); the related-item moves give sequential
 *   models item-to-item transitions.
 * - Ratings 1..5: user and item biases (popular items are rated a little higher), a bonus for the user's favourite
 *   topics and for taste similarity, and noise, cut at ordinal thresholds.
 * - Time. Users join at different times over the window (early-skewed: ~63% in its first quarter, fewer than ML-1M's
 *   2000 cohort so that temporal splits have data), stay active for a log-normal time (median 10 days, a long tail of
 *   users returning for years) and interact in sessions (~25 interactions, ~1 minute apart) spread over their active
 *   time. A user's timestamps are distinct integers inside [startTime, startTime + spanDays x 86400), so
 *   (user, item, timestamp) is unique; a user's rows come in time order, users one after another.
 *
 * With the defaults ({@link ML1M_LIKE}), measured against ML-1M: users 6,040 (min 20, median 96, mean 165.6) vs the
 * same; items 3,706, most popular item 3,407 (ML-1M 3,428), median item 142 (123.5), top 10% of items 44% of the
 * interactions; ratings 5.6 / 10.7 / 26.3 / 34.7 / 22.6% (5.6 / 10.8 / 26.1 / 34.9 / 22.6%), mean 3.58 (3.58). The
 * least popular items get ~35 interactions, where ML-1M's tail goes down to 1. About 0.5 s per million rows.
 *
 * Drift knobs (all default to "no drift"; the world for a seed stays the same and only the knob's part changes, each
 * part having its own random stream):
 *
 * - `batch`: index of a batch in a series drawn from the same world. The world (topics, popularity, preferences,
 *   tastes, activity levels) depends on `seed` only; which interactions are sampled depends on `seed` and `batch`.
 *   A later batch that continues in time: `{ batch: 1, startTime: start + spanDays * 86400, spanDays: 7,
 *   interactions: 50_000, minPerUser: 1 }`. Batches are independent samples: a user may meet an item again later.
 * - `popularityShift` in [0, 1]: that fraction of the catalogue (a random subset, nested as the value grows) swaps its
 *   popularity ranks among itself, so hits become niche and vice versa; 1 re-ranks the whole catalogue.
 * - `preferenceShift` in [0, 1]: every user's topic preferences and taste vector move towards freshly drawn ones:
 *   pref = (1 - s) x pref + s x pref' (taste likewise, renormalised); 1 replaces them.
 * - `newItemsFraction` in [0, 0.9]: cold items appear: that fraction of the resulting catalogue is new items with ids
 *   after the base catalogue (i{items + 1}, ...), with topics, popularity ranks and tastes drawn like the others, so
 *   they take about that fraction of the interactions too. The base items are unchanged.
 * - `volumeScale` > 0: multiplies the number of interactions (traffic volume); users and `minPerUser` are unchanged.
 * - `startTime` / `spanDays`: the time window, so that a later batch can continue where the previous one ended.
 *
 * Memory is O(users + items): rows are produced one user at a time and streamed.
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Rng, hashSeed } from './random';

/**
 * `Math`, bound once: inside Jest's vm sandbox every lookup of the global `Math` goes through the context's global
 * object (~100 ns each), which made generation four times slower there than under plain Node.
 */
const math = Math;

export interface SyntheticOptions {
  /** Number of users, ids u1..u{users}; each has at least `minPerUser` interactions. */
  users: number;
  /** Base catalogue size, ids i1..i{items} (plus new items, see `newItemsFraction`). */
  items: number;
  /** Number of interactions before `volumeScale`; the output has exactly round(interactions x volumeScale) rows. */
  interactions: number;
  /** Minimum interactions per user (ML-1M: 20). */
  minPerUser: number;
  /** Seed of the latent world and of the sampling; same options give byte-identical output. */
  seed: number;
  /** Start of the time window, unix seconds (integer). */
  startTime: number;
  /** Length of the time window in days; all timestamps are in [startTime, startTime + spanDays x 86400). */
  spanDays: number;
  /** Number of latent topics items belong to (ML-1M has 18 genres). */
  clusters: number;
  /** Exponent of the Zipf-Mandelbrot popularity prior; 0 = uniform, larger = heavier head. */
  popularityExponent: number;
  /** Probability that a non-sequential choice follows the user's topic preferences rather than global popularity. */
  preferenceStrength: number;
  /** How strongly the choice within a topic follows the user's taste vector (0 = popularity only). */
  tasteStrength: number;
  /** Probability that the next item within a session is related to the previous one (sequential signal). */
  sequentialStrength: number;
  /** Drift: index of this batch in a series drawn from the same world (see the module comment). */
  batch: number;
  /** Drift: fraction of the catalogue whose popularity ranks are re-shuffled among themselves, in [0, 1]. */
  popularityShift: number;
  /** Drift: how far users' topic preferences move towards freshly drawn ones, in [0, 1]. */
  preferenceShift: number;
  /** Drift: fraction of the resulting catalogue that is new (cold) items with ids after the base ones, in [0, 0.9]. */
  newItemsFraction: number;
  /** Drift: multiplies the number of interactions (traffic volume), > 0. */
  volumeScale: number;
}

/** Calibrated to MovieLens-1M: 6,040 users, 3,706 items, 1,000,209 ratings, 2000-04-25 .. 2003-02-28. */
export const ML1M_LIKE: SyntheticOptions = Object.freeze({
  users: 6040,
  items: 3706,
  interactions: 1_000_209,
  minPerUser: 20,
  seed: 42,
  startTime: 956_703_932,
  spanDays: 1038,
  clusters: 18,
  popularityExponent: 2,
  preferenceStrength: 0.75,
  tasteStrength: 3,
  sequentialStrength: 0.3,
  batch: 0,
  popularityShift: 0,
  preferenceShift: 0,
  newItemsFraction: 0,
  volumeScale: 1,
});

export interface SyntheticRow {
  userId: string;
  itemId: string;
  rating: number;
  /** Unix seconds, integer. */
  timestamp: number;
}

/** The planted ground truth of a synthetic world, for tests, benchmarks and drift experiments. */
export interface SyntheticLatents {
  /** Catalogue ids by item index: base items first, then new items. */
  itemIds: string[];
  /** Number of base (non-new) items; item indices >= baseItems are new items. */
  baseItems: number;
  clusters: number;
  /** Topic of each item, by item index. */
  itemCluster: Int32Array;
  /** Popularity prior of each item (after `popularityShift`), by item index; not normalised. */
  itemPopularity: Float64Array;
  /** Interactions of each user in this batch, by user index (user id u{index + 1}). */
  userCounts: Int32Array;
  /** The topic preference mixture of a user (after `preferenceShift`), length `clusters`, sums to 1. */
  userPreference(userIndex: number): Float64Array;
  /** Dimensions of the taste vectors. */
  tasteDims: number;
  /** Unit taste vectors of the items, `tasteDims` per item index. */
  itemFactors: Float64Array;
  /** The unit taste vector of a user (after `preferenceShift`). */
  userTaste(userIndex: number): Float64Array;
}

// Calibration constants (see the module comment).
const HEAD_OFFSET_FRACTION = 0.0135;
const ACTIVITY_SIGMA = 1.14;
const MAX_USER_FILL = 0.75;
const NEIGHBOUR_WINDOW = 3;
const RELATED_RANK_JITTER = 0.5;
const REJECTION_ATTEMPTS = 48;
/** A user draws by rejection when interactions x this < the size of their preferred topics (see pickPreferred). */
const LAZY_COST_RATIO = 16;
const LAZY_ATTEMPTS = 256;
const SESSION_MEAN = 24;
const GAP_MIN_S = 10;
const GAP_MEAN_S = 50;
const START_SKEW = 3;
const ACTIVE_MEDIAN_DAYS = 10;
const ACTIVE_SIGMA = 2.2;
const RATING_BASE = 3.5;
const USER_BIAS_SD = 0.45;
const ITEM_BIAS_SD = 0.35;
const ITEM_POPULARITY_BIAS = 0.15;
const TOPIC_BONUS = 0.9;
const RATING_NOISE_SD = 0.75;
/** Ordinal cut points of the rating score, placed so the default marginal matches ML-1M's. */
const RATING_CUTS = [2.19, 2.85, 3.71, 4.72];
const MAX_PREFERRED = 4;
const TASTE_DIMS = 8;
const TASTE_RATING_BONUS = 1;
const SECONDS_PER_DAY = 86400;

// Stream tags: each part of the world has its own random stream, so changing one knob leaves the others unchanged.
const TAG_ITEMS = 0x17e35;
const TAG_USERS = 0x05e25;
const TAG_POPULARITY_SHIFT = 0x9095;
const TAG_PREFERENCE_SHIFT = 0x97ef;
const TAG_NEW_ITEMS = 0x2e3;
const TAG_SAMPLE = 0x5a3b1;

const OPTION_KEYS = Object.keys(ML1M_LIKE) as (keyof SyntheticOptions)[];

function fail(field: string, value: unknown, expectation: string): never {
  throw new Error(`synthetic option ${field} must be ${expectation}, got ${String(value)}`);
}

function isInteger(value: number): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

function requirePositiveInteger(options: SyntheticOptions, field: keyof SyntheticOptions): void {
  const value = options[field];
  if (!isInteger(value) || value <= 0) fail(field, value, 'a positive integer');
}

function requireFraction(options: SyntheticOptions, field: keyof SyntheticOptions, max = 1): void {
  const value = options[field];
  if (typeof value !== 'number' || !(value >= 0 && value <= max)) fail(field, value, `a number in [0, ${max}]`);
}

function newItemCount(options: SyntheticOptions): number {
  const f = options.newItemsFraction;
  return math.round((options.items * f) / (1 - f));
}

function maxPerUser(options: SyntheticOptions): number {
  const catalogue = options.items + newItemCount(options);
  return math.max(options.minPerUser, math.floor(catalogue * MAX_USER_FILL));
}

/** Merges `options` over {@link ML1M_LIKE} and validates them; throws an Error naming the field and the value. */
export function resolveSyntheticOptions(options: Partial<SyntheticOptions> = {}): SyntheticOptions {
  if (options === null || typeof options !== 'object') fail('options', options, 'an object');
  const resolved: SyntheticOptions = { ...ML1M_LIKE };
  for (const [key, value] of Object.entries(options)) {
    if (!(OPTION_KEYS as string[]).includes(key)) {
      throw new Error(`unknown synthetic option ${key} (known: ${OPTION_KEYS.join(', ')})`);
    }
    if (value !== undefined) (resolved as unknown as Record<string, unknown>)[key] = value;
  }
  for (const key of OPTION_KEYS) {
    if (typeof resolved[key] !== 'number' || Number.isNaN(resolved[key])) fail(key, resolved[key], 'a number');
  }
  for (const field of ['users', 'items', 'interactions', 'minPerUser', 'clusters'] as const) {
    requirePositiveInteger(resolved, field);
  }
  const o = resolved;
  if (!isInteger(o.seed)) fail('seed', o.seed, 'an integer');
  if (!isInteger(o.batch) || o.batch < 0) fail('batch', o.batch, 'a non-negative integer');
  if (!isInteger(o.startTime) || o.startTime < 0) fail('startTime', o.startTime, 'a non-negative integer (unix s)');
  if (!Number.isFinite(o.spanDays) || o.spanDays <= 0) fail('spanDays', o.spanDays, 'a positive number');
  if (!(o.popularityExponent >= 0 && o.popularityExponent <= 5)) {
    fail('popularityExponent', o.popularityExponent, 'a number in [0, 5]');
  }
  requireFraction(o, 'preferenceStrength');
  if (!(o.tasteStrength >= 0 && o.tasteStrength <= 10)) fail('tasteStrength', o.tasteStrength, 'a number in [0, 10]');
  requireFraction(o, 'sequentialStrength');
  requireFraction(o, 'popularityShift');
  requireFraction(o, 'preferenceShift');
  requireFraction(o, 'newItemsFraction', 0.9);
  if (!Number.isFinite(o.volumeScale) || o.volumeScale <= 0) fail('volumeScale', o.volumeScale, 'a positive number');
  if (o.items > 50_000_000) fail('items', o.items, 'at most 50000000');
  if (o.clusters > o.items) fail('clusters', o.clusters, `at most items (${o.items})`);
  if (o.minPerUser > o.items) fail('minPerUser', o.minPerUser, `at most items (${o.items}): a user rates an item once`);
  const total = math.round(o.interactions * o.volumeScale);
  const cap = maxPerUser(o);
  if (total < o.users * o.minPerUser) {
    fail(
      'interactions',
      o.interactions,
      `at least users x minPerUser = ${o.users * o.minPerUser} (after volumeScale ${o.volumeScale})`,
    );
  }
  if (total > o.users * cap) {
    fail(
      'interactions',
      o.interactions,
      `at most users x ${cap} = ${o.users * cap} (a user meets at most ${MAX_USER_FILL * 100}% of the catalogue; ` +
        `after volumeScale ${o.volumeScale})`,
    );
  }
  if (math.floor(o.spanDays * SECONDS_PER_DAY) < cap + 1) {
    fail('spanDays', o.spanDays, `long enough for ${cap + 1} distinct seconds`);
  }
  return resolved;
}

/** Writes a uniformly random unit vector of TASTE_DIMS dimensions into out[offset..]. */
function randomUnit(rng: Rng, out: Float64Array, offset: number): void {
  let norm = 0;
  for (let d = 0; d < TASTE_DIMS; d++) {
    const x = rng.normal();
    out[offset + d] = x;
    norm += x * x;
  }
  normalise(out, offset, norm);
}

function normalise(out: Float64Array, offset: number, squaredNorm: number): void {
  const scale = squaredNorm > 0 ? 1 / math.sqrt(squaredNorm) : 0;
  for (let d = 0; d < TASTE_DIMS; d++) out[offset + d] = (out[offset + d] as number) * scale;
}

/** Smallest index i in [from, to) with cum[i] > x (the last index if none). */
function searchCum(cum: Float64Array, from: number, to: number, x: number): number {
  let lo = from;
  let hi = to - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((cum[mid] as number) > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

interface World {
  o: SyntheticOptions;
  total: number;
  spanSeconds: number;
  maxPerUser: number;
  baseItems: number;
  catalogue: number;
  clusters: number;
  itemIds: string[];
  itemCluster: Int32Array;
  /** Position of each item in `clusterItems`. */
  itemPos: Int32Array;
  itemWeight: Float64Array;
  itemBias: Float64Array;
  /** Unit taste vectors of the items, TASTE_DIMS per item. */
  itemFactors: Float64Array;
  /** Items grouped by topic; topic c occupies [clusterStart[c], clusterStart[c + 1]). */
  clusterStart: Int32Array;
  clusterItems: Int32Array;
  /** Running sum of item weights in `clusterItems` order: serves both per-topic and global sampling. */
  itemCum: Float64Array;
  /** Popularity mass of each topic (after drift), W(topic). */
  clusterWeight: Float64Array;
  /** Cumulative base popularity of the topics, used to draw which topics users prefer. */
  clusterPrefCum: Float64Array;
  userCounts: Int32Array;
}

function buildWorld(o: SyntheticOptions): World {
  const n = o.items;
  const k = o.clusters;
  const nNew = newItemCount(o);
  const m = n + nNew;
  const a = o.popularityExponent;
  const q = HEAD_OFFSET_FRACTION * n;
  const weightOfRank = (rank: number): number => math.pow(rank + q, -a);
  // Popularity z-score of a rank (on the log scale), for the rating bias of popular items.
  let logMean = 0;
  let logSq = 0;
  for (let r = 1; r <= n; r++) {
    const l = math.log(weightOfRank(r));
    logMean += l;
    logSq += l * l;
  }
  logMean /= n;
  const logSd = math.sqrt(math.max(logSq / n - logMean * logMean, 0)) || 1;
  const popularityZ = (rank: number): number => (math.log(weightOfRank(rank)) - logMean) / logSd;

  const rng = new Rng(hashSeed(o.seed, TAG_ITEMS));
  const shareCum = new Float64Array(k);
  let shareTotal = 0;
  for (let c = 0; c < k; c++) {
    shareTotal += math.exp(0.6 * rng.normal());
    shareCum[c] = shareTotal;
  }
  const itemCluster = new Int32Array(m);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  rng.shuffle(order);
  for (let t = 0; t < n; t++) {
    // The first `clusters` items of the random order seed every topic, so none is empty.
    itemCluster[order[t] as number] = t < k ? t : searchCum(shareCum, 0, k, rng.next() * shareTotal);
  }
  const rank = new Int32Array(n);
  for (let i = 0; i < n; i++) rank[i] = i + 1;
  rng.shuffle(rank);
  const itemWeight = new Float64Array(m);
  const itemBias = new Float64Array(m);
  const itemFactors = new Float64Array(m * TASTE_DIMS);
  const clusterBase = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    const r = rank[i] as number;
    itemWeight[i] = weightOfRank(r);
    itemBias[i] = ITEM_BIAS_SD * rng.normal() + ITEM_POPULARITY_BIAS * popularityZ(r);
    randomUnit(rng, itemFactors, i * TASTE_DIMS);
    const c = itemCluster[i] as number;
    clusterBase[c] = (clusterBase[c] as number) + (itemWeight[i] as number);
  }
  const clusterPrefCum = new Float64Array(k);
  let running = 0;
  for (let c = 0; c < k; c++) {
    running += clusterBase[c] as number;
    clusterPrefCum[c] = running;
  }

  if (o.popularityShift > 0) {
    const shiftRng = new Rng(hashSeed(o.seed, TAG_POPULARITY_SHIFT));
    const chosen: number[] = [];
    for (let i = 0; i < n; i++) if (shiftRng.next() < o.popularityShift) chosen.push(i);
    const ranks = chosen.map((i) => rank[i] as number);
    shiftRng.shuffle(ranks);
    chosen.forEach((i, j) => {
      itemWeight[i] = weightOfRank(ranks[j] as number);
    });
  }

  const newRng = new Rng(hashSeed(o.seed, TAG_NEW_ITEMS));
  for (let j = n; j < m; j++) {
    itemCluster[j] = searchCum(shareCum, 0, k, newRng.next() * shareTotal);
    const r = 1 + newRng.int(n);
    itemWeight[j] = weightOfRank(r);
    itemBias[j] = ITEM_BIAS_SD * newRng.normal() + ITEM_POPULARITY_BIAS * popularityZ(r);
    randomUnit(newRng, itemFactors, j * TASTE_DIMS);
  }

  // Group items by topic, base items first, each topic ordered by a jittered popularity rank so that related items
  // (neighbours in that order) have similar popularity, like the sequels of a hit; new items go at the end.
  const jittered = new Float64Array(n);
  for (let i = 0; i < n; i++) jittered[i] = (rank[i] as number) * math.exp(RELATED_RANK_JITTER * rng.normal());
  order.sort((x, y) => (jittered[x] as number) - (jittered[y] as number) || x - y);
  const clusterStart = new Int32Array(k + 1);
  for (let i = 0; i < m; i++) {
    const c = (itemCluster[i] as number) + 1;
    clusterStart[c] = (clusterStart[c] as number) + 1;
  }
  for (let c = 0; c < k; c++) clusterStart[c + 1] = (clusterStart[c + 1] as number) + (clusterStart[c] as number);
  const fill = clusterStart.slice(0, k);
  const clusterItems = new Int32Array(m);
  const itemPos = new Int32Array(m);
  const place = (i: number): void => {
    const c = itemCluster[i] as number;
    const p = fill[c] as number;
    fill[c] = p + 1;
    clusterItems[p] = i;
    itemPos[i] = p;
  };
  for (let t = 0; t < n; t++) place(order[t] as number);
  for (let j = n; j < m; j++) place(j);
  const itemCum = new Float64Array(m);
  running = 0;
  for (let p = 0; p < m; p++) {
    running += itemWeight[clusterItems[p] as number] as number;
    itemCum[p] = running;
  }
  const clusterWeight = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    const from = clusterStart[c] as number;
    const to = clusterStart[c + 1] as number;
    clusterWeight[c] = (itemCum[to - 1] as number) - (from > 0 ? (itemCum[from - 1] as number) : 0);
  }

  const itemIds: string[] = new Array<string>(m);
  for (let i = 0; i < m; i++) itemIds[i] = `i${i + 1}`;

  const world: World = {
    o,
    total: math.round(o.interactions * o.volumeScale),
    spanSeconds: math.floor(o.spanDays * SECONDS_PER_DAY),
    maxPerUser: maxPerUser(o),
    baseItems: n,
    catalogue: m,
    clusters: k,
    itemIds,
    itemCluster,
    itemPos,
    itemWeight,
    itemBias,
    itemFactors,
    clusterStart,
    clusterItems,
    itemCum,
    clusterWeight,
    clusterPrefCum,
    userCounts: new Int32Array(o.users),
  };
  allocateCounts(world);
  return world;
}

/** Interactions per user: minPerUser + S x activity, capped, with S chosen so that the total is exact. */
function allocateCounts(w: World): void {
  const { users, minPerUser } = w.o;
  const cap = w.maxPerUser;
  const activity = new Float64Array(users);
  let activitySum = 0;
  for (let u = 0; u < users; u++) {
    const x = math.exp(ACTIVITY_SIGMA * new Rng(hashSeed(w.o.seed, TAG_USERS, u)).normal());
    activity[u] = x;
    activitySum += x;
  }
  const counts = w.userCounts;
  const fillWith = (scale: number): number => {
    let sum = 0;
    for (let u = 0; u < users; u++) {
      const c = math.min(cap, minPerUser + math.round(scale * (activity[u] as number)));
      counts[u] = c;
      sum += c;
    }
    return sum;
  };
  const excess = w.total - users * minPerUser;
  let lo = 0;
  let hi = math.max(1, (2 * excess) / activitySum);
  while (fillWith(hi) < w.total) hi *= 2;
  for (let iter = 0; iter < 64; iter++) {
    const mid = (lo + hi) / 2;
    if (fillWith(mid) <= w.total) lo = mid;
    else hi = mid;
  }
  let diff = w.total - fillWith(lo);
  // Hand out the rounding remainder one by one (feasible: validation checked minPerUser <= total / users <= cap).
  for (let u = 0; diff !== 0; u = (u + 1) % users) {
    const c = counts[u] as number;
    if (diff > 0 && c < cap) {
      counts[u] = c + 1;
      diff--;
    } else if (diff < 0 && c > minPerUser) {
      counts[u] = c - 1;
      diff++;
    }
  }
}

/** A user's latent state: sparse topic preferences (as a cumulative list) and rating bias. */
class UserState {
  readonly prefDense: Float64Array;
  readonly prefClusters = new Int32Array(2 * MAX_PREFERRED);
  readonly prefCum = new Float64Array(2 * MAX_PREFERRED);
  prefCount = 0;
  prefMax = 0;
  bias = 0;
  readonly taste = new Float64Array(TASTE_DIMS);
  private readonly shiftedTaste = new Float64Array(TASTE_DIMS);
  private readonly draw = new Float64Array(2 * MAX_PREFERRED);
  private readonly drawClusters = new Int32Array(2 * MAX_PREFERRED);

  constructor(private readonly w: World) {
    this.prefDense = new Float64Array(w.clusters);
  }

  /** Draws 1-4 preferred topics (popular topics more often) with random weights summing to `scale`. */
  private drawPreference(rng: Rng, scale: number): void {
    const k = this.w.clusters;
    const u = rng.next();
    const wanted = math.min(k, u < 0.3 ? 1 : u < 0.65 ? 2 : u < 0.9 ? 3 : 4);
    const total = this.w.clusterPrefCum[k - 1] as number;
    let count = 0;
    for (let attempt = 0; attempt < 16 * MAX_PREFERRED && count < wanted; attempt++) {
      const c = searchCum(this.w.clusterPrefCum, 0, k, rng.next() * total);
      let dup = false;
      for (let j = 0; j < count; j++) if (this.drawClusters[j] === c) dup = true;
      if (dup) continue;
      this.drawClusters[count] = c;
      this.draw[count] = 0.25 + rng.exponential();
      count++;
    }
    let sum = 0;
    for (let j = 0; j < count; j++) sum += this.draw[j] as number;
    for (let j = 0; j < count; j++) {
      const c = this.drawClusters[j] as number;
      this.prefDense[c] = (this.prefDense[c] as number) + (scale * (this.draw[j] as number)) / sum;
    }
  }

  load(u: number): void {
    const { o } = this.w;
    // Clear the previous user's preferences (sparse).
    for (let j = 0; j < this.prefCount; j++) this.prefDense[this.prefClusters[j] as number] = 0;
    const rng = new Rng(hashSeed(o.seed, TAG_USERS, u));
    rng.normal(); // activity, used by allocateCounts
    this.bias = USER_BIAS_SD * rng.normal();
    this.drawPreference(rng, 1 - o.preferenceShift);
    randomUnit(rng, this.taste, 0);
    if (o.preferenceShift > 0) {
      const shiftRng = new Rng(hashSeed(o.seed, TAG_PREFERENCE_SHIFT, u));
      this.drawPreference(shiftRng, o.preferenceShift);
      randomUnit(shiftRng, this.shiftedTaste, 0);
      let norm = 0;
      for (let d = 0; d < TASTE_DIMS; d++) {
        const x =
          (1 - o.preferenceShift) * (this.taste[d] as number) + o.preferenceShift * (this.shiftedTaste[d] as number);
        this.taste[d] = x;
        norm += x * x;
      }
      normalise(this.taste, 0, norm);
    }
    // Collect the non-zero topics (at most 2 x MAX_PREFERRED) in topic order.
    let count = 0;
    let cum = 0;
    let max = 0;
    for (let c = 0; c < this.w.clusters && count < this.prefClusters.length; c++) {
      const p = this.prefDense[c] as number;
      if (p <= 0) continue;
      this.prefClusters[count] = c;
      cum += p;
      this.prefCum[count] = cum;
      if (p > max) max = p;
      count++;
    }
    this.prefCount = count;
    this.prefMax = max;
  }

  /** Cosine similarity of the user's taste and the item's factors, in [-1, 1]. */
  affinity(item: number): number {
    const f = this.w.itemFactors;
    const base = item * TASTE_DIMS;
    let dot = 0;
    for (let d = 0; d < TASTE_DIMS; d++) dot += (this.taste[d] as number) * (f[base + d] as number);
    return dot;
  }

  sampleCluster(x: number): number {
    const target = x * (this.prefCum[this.prefCount - 1] as number);
    for (let j = 0; j < this.prefCount - 1; j++) {
      if ((this.prefCum[j] as number) > target) return this.prefClusters[j] as number;
    }
    return this.prefClusters[this.prefCount - 1] as number;
  }
}

/** Samples one user's interactions at a time into reusable buffers. */
class UserSampler {
  readonly items: Int32Array;
  readonly ratings: Uint8Array;
  readonly times: Float64Array;
  private readonly sessionStartFlag: Uint8Array;
  private readonly sessionSizes: Int32Array;
  private readonly seen: Int32Array;
  private stamp = 0;
  private readonly user: UserState;
  private readonly neighbourWeights = new Float64Array(2 * NEIGHBOUR_WINDOW + 1);
  // The items of the user's preferred topics with their taste weights, one segment per preferred topic (local
  // cumulative sums). Seen items stay in the sums ("stale" mass) until a segment is rebuilt without them.
  private readonly segItems: Int32Array;
  private readonly segCum: Float64Array;
  private readonly segFrom = new Int32Array(2 * MAX_PREFERRED);
  private readonly segTo = new Int32Array(2 * MAX_PREFERRED);
  private readonly segRemaining = new Float64Array(2 * MAX_PREFERRED);
  private readonly segStale = new Float64Array(2 * MAX_PREFERRED);
  private readonly topicSegment: Int32Array;
  private segmentsBuilt = false;
  /** Taste weights of the items of the user's preferred topics (valid where topicSegment of the topic >= 0). */
  private readonly cachedWeight: Float64Array;

  constructor(private readonly w: World) {
    const cap = w.maxPerUser;
    this.items = new Int32Array(cap);
    this.ratings = new Uint8Array(cap);
    this.times = new Float64Array(cap);
    this.sessionStartFlag = new Uint8Array(cap);
    this.sessionSizes = new Int32Array(cap);
    this.seen = new Int32Array(w.catalogue);
    this.user = new UserState(w);
    this.segItems = new Int32Array(w.catalogue);
    this.segCum = new Float64Array(w.catalogue);
    this.topicSegment = new Int32Array(w.clusters).fill(-1);
    this.cachedWeight = new Float64Array(w.catalogue);
  }

  /** Fills the buffers with user `u`'s interactions in time order; returns how many. */
  fill(u: number): number {
    const w = this.w;
    const n = w.userCounts[u] as number;
    const rng = new Rng(hashSeed(w.o.seed, TAG_SAMPLE, w.o.batch, u));
    this.user.load(u);
    this.stamp = u + 1;
    // Exact per-topic sums cost O(size of the preferred topics) per user; light users draw by rejection instead.
    this.segmentsBuilt = false;
    this.topicSegment.fill(-1);
    let preferredSize = 0;
    for (let j = 0; j < this.user.prefCount; j++) {
      const c = this.user.prefClusters[j] as number;
      preferredSize += (w.clusterStart[c + 1] as number) - (w.clusterStart[c] as number);
    }
    if (n * LAZY_COST_RATIO >= preferredSize) this.buildSegments();
    this.fillTimes(rng, n);
    const { items, ratings } = this;
    let prev = -1;
    for (let t = 0; t < n; t++) {
      let item = -1;
      if (prev >= 0 && this.sessionStartFlag[t] === 0 && rng.next() < w.o.sequentialStrength) {
        item = this.neighbour(rng, prev);
      }
      if (item < 0) item = this.choose(rng);
      this.markSeen(item);
      items[t] = item;
      ratings[t] = this.rate(rng, item);
      prev = item;
    }
    return n;
  }

  /** Builds the exact per-topic sums over the unseen items of the preferred topics. */
  private buildSegments(): void {
    const w = this.w;
    const user = this.user;
    this.segmentsBuilt = true;
    let p = 0;
    for (let j = 0; j < user.prefCount; j++) {
      const c = user.prefClusters[j] as number;
      this.topicSegment[c] = j;
      this.segFrom[j] = p;
      let sum = 0;
      for (let q = w.clusterStart[c] as number; q < (w.clusterStart[c + 1] as number); q++, p++) {
        const item = w.clusterItems[q] as number;
        const weight = this.tasteWeight(item);
        this.cachedWeight[item] = weight;
        if (this.seen[item] !== this.stamp) sum += weight;
        this.segItems[p] = item;
        this.segCum[p] = sum;
      }
      this.segTo[j] = p;
      this.segRemaining[j] = sum;
      this.segStale[j] = 0;
    }
  }

  /** Probability mass of preferred topic j among the unseen items: pref(topic) x remaining taste weight / W(topic). */
  private segmentMass(j: number): number {
    const topic = this.user.prefClusters[j] as number;
    return (
      ((this.user.prefDense[topic] as number) * (this.segRemaining[j] as number)) /
      (this.w.clusterWeight[topic] as number)
    );
  }

  /** Rebuilds segment j's sums without the seen items; returns the remaining (unseen) mass. */
  private rebuildSegment(j: number): number {
    let sum = 0;
    for (let p = this.segFrom[j] as number; p < (this.segTo[j] as number); p++) {
      const item = this.segItems[p] as number;
      if (this.seen[item] !== this.stamp) sum += this.cachedWeight[item] as number;
      this.segCum[p] = sum;
    }
    this.segRemaining[j] = sum;
    this.segStale[j] = 0;
    return sum;
  }

  private markSeen(item: number): void {
    this.seen[item] = this.stamp;
    const j = this.topicSegment[this.w.itemCluster[item] as number] as number;
    if (j >= 0 && this.segmentsBuilt) {
      const weight = this.cachedWeight[item] as number;
      this.segRemaining[j] = math.max(0, (this.segRemaining[j] as number) - weight);
      this.segStale[j] = (this.segStale[j] as number) + weight;
    }
  }

  /**
   * An unseen item of the user's preferred topics, drawn exactly from P(item) proportional to
   * pref(topic) x w(item) x exp(tasteStrength x (cos(user, item) - 1)) / W(topic) over the unseen items; -1 if they
   * are all seen. Light users draw by rejection (topic by preference, item by popularity, accepted with probability
   * exp(tasteStrength x (cos - 1)) <= 1 if unseen); heavy users, or light ones after many rejections, use exact sums.
   */
  private pickPreferred(rng: Rng): number {
    const user = this.user;
    if (!this.segmentsBuilt) {
      const w = this.w;
      const cum = w.itemCum;
      const beta = w.o.tasteStrength;
      for (let attempt = 0; attempt < LAZY_ATTEMPTS; attempt++) {
        const c = user.sampleCluster(rng.next());
        const from = w.clusterStart[c] as number;
        const to = w.clusterStart[c + 1] as number;
        const lo = from > 0 ? (cum[from - 1] as number) : 0;
        const item = w.clusterItems[
          searchCum(cum, from, to, lo + rng.next() * ((cum[to - 1] as number) - lo))
        ] as number;
        if (this.seen[item] === this.stamp) continue;
        if (beta > 0 && rng.next() >= math.exp(beta * (user.affinity(item) - 1))) continue;
        return item;
      }
      this.buildSegments();
    }
    for (;;) {
      let total = 0;
      for (let j = 0; j < user.prefCount; j++) total += this.segmentMass(j);
      if (!(total > 0)) return -1;
      let x = rng.next() * total;
      let j = 0;
      for (; j < user.prefCount - 1; j++) {
        x -= this.segmentMass(j);
        if (x < 0 && (this.segRemaining[j] as number) > 0) break;
      }
      const from = this.segFrom[j] as number;
      const to = this.segTo[j] as number;
      if (to <= from) return -1;
      // Keep the stale (seen) mass under half of the sums so that rejection below succeeds quickly.
      if (2 * (this.segStale[j] as number) > (this.segCum[to - 1] as number) && this.rebuildSegment(j) <= 0) continue;
      for (let attempt = 0; attempt < REJECTION_ATTEMPTS; attempt++) {
        const item = this.segItems[searchCum(this.segCum, from, to, rng.next() * (this.segCum[to - 1] as number))];
        if (item !== undefined && this.seen[item] !== this.stamp) return item;
      }
      this.rebuildSegment(j); // (practically unreachable) then draw again with exact sums
    }
  }

  /** An unseen item: from the user's topics and taste, else from the global popularity prior. */
  private choose(rng: Rng): number {
    const w = this.w;
    if (this.user.prefCount > 0 && rng.next() < w.o.preferenceStrength) {
      const item = this.pickPreferred(rng);
      if (item >= 0) return item;
    }
    const cum = w.itemCum;
    const m = w.catalogue;
    for (let attempt = 0; attempt < REJECTION_ATTEMPTS; attempt++) {
      const item = w.clusterItems[searchCum(cum, 0, m, rng.next() * (cum[m - 1] as number))] as number;
      if (this.seen[item] !== this.stamp) return item;
    }
    // Heavy users who exhausted what they would pick: the next unseen item from a random place.
    let item = rng.int(m);
    while (this.seen[item] === this.stamp) item = (item + 1) % m;
    return item;
  }

  private rate(rng: Rng, item: number): number {
    const user = this.user;
    const topicAffinity = (user.prefDense[this.w.itemCluster[item] as number] as number) / user.prefMax;
    const score =
      RATING_BASE +
      user.bias +
      (this.w.itemBias[item] as number) +
      TOPIC_BONUS * (topicAffinity - 0.4) +
      TASTE_RATING_BONUS * user.affinity(item) +
      RATING_NOISE_SD * rng.normal();
    let r = 1;
    while (r < 5 && score >= (RATING_CUTS[r - 1] as number)) r++;
    return r;
  }

  /** Weight of an item for this user: popularity x exp(tasteStrength x (affinity - 1)), at most the popularity. */
  private tasteWeight(item: number): number {
    const beta = this.w.o.tasteStrength;
    const popularity = this.w.itemWeight[item] as number;
    return beta > 0 ? popularity * math.exp(beta * (this.user.affinity(item) - 1)) : popularity;
  }

  /** An unseen item related to `prev` (same topic, nearby in its order), by taste weight; -1 if none. */
  private neighbour(rng: Rng, prev: number): number {
    const w = this.w;
    const c = w.itemCluster[prev] as number;
    const start = w.clusterStart[c] as number;
    const size = (w.clusterStart[c + 1] as number) - start;
    const pos = (w.itemPos[prev] as number) - start;
    const cached = (this.topicSegment[c] as number) >= 0;
    const from = math.max(0, pos - NEIGHBOUR_WINDOW);
    const to = math.min(size - 1, pos + NEIGHBOUR_WINDOW);
    const weights = this.neighbourWeights;
    let total = 0;
    for (let q = from; q <= to; q++) {
      const item = w.clusterItems[start + q] as number;
      const weight =
        q === pos || this.seen[item] === this.stamp
          ? 0
          : cached
            ? (this.cachedWeight[item] as number)
            : this.tasteWeight(item);
      weights[q - from] = weight;
      total += weight;
    }
    if (total <= 0) return -1;
    let x = rng.next() * total;
    let last = -1;
    for (let q = from; q <= to; q++) {
      const weight = weights[q - from] as number;
      if (weight <= 0) continue;
      last = w.clusterItems[start + q] as number;
      x -= weight;
      if (x < 0) break;
    }
    return last;
  }

  /** Strictly increasing integer offsets (seconds from startTime) in sessions inside the user's active time. */
  private fillTimes(rng: Rng, n: number): void {
    const span = this.w.spanSeconds;
    const times = this.times;
    const flags = this.sessionStartFlag;
    const start = math.floor(math.pow(rng.next(), START_SKEW) * span);
    const active = SECONDS_PER_DAY * ACTIVE_MEDIAN_DAYS * math.exp(ACTIVE_SIGMA * rng.normal());
    const duration = math.max(0, math.min(span - 1 - start, active));
    let sessions = 0;
    for (let remaining = n; remaining > 0; sessions++) {
      const size = math.min(remaining, 1 + math.floor(rng.exponential() * SESSION_MEAN));
      this.sessionSizes[sessions] = size;
      remaining -= size;
    }
    // Session starts: sorted uniforms over [0, duration) from normalised exponential spacings; the first is at 0.
    let spacingSum = 0;
    for (let s = 0; s < sessions; s++) {
      const e = rng.exponential();
      times[s] = spacingSum; // temporarily the unnormalised session starts
      spacingSum += e;
    }
    let t = 0;
    let last = -1;
    for (let s = sessions - 1; s >= 0; s--) {
      // Spread the session starts to the back of the buffer so the front can be overwritten in order.
      times[n - sessions + s] = math.floor(start + (duration * (times[s] as number)) / spacingSum);
    }
    for (let s = 0; s < sessions; s++) {
      const sessionStart = times[n - sessions + s] as number;
      const size = this.sessionSizes[s] as number;
      for (let j = 0; j < size; j++, t++) {
        const ts =
          j === 0 ? math.max(sessionStart, last + 1) : last + GAP_MIN_S + math.floor(rng.exponential() * GAP_MEAN_S);
        times[t] = ts;
        flags[t] = j === 0 ? 1 : 0;
        last = ts;
      }
    }
    if (last > span - 1) squeeze(times, n, start, span - 1);
  }
}

/** Rescales times[0..n) (strictly increasing, times[0] >= start) into [0, end] keeping them strictly increasing. */
function squeeze(times: Float64Array, n: number, start: number, end: number): void {
  const first = math.min(start, times[0] as number);
  const last = times[n - 1] as number;
  const factor = last > first ? (end - first) / (last - first) : 0;
  for (let t = 0; t < n; t++) times[t] = math.floor(first + ((times[t] as number) - first) * factor);
  for (let t = 1; t < n; t++) times[t] = math.max(times[t] as number, (times[t - 1] as number) + 1);
  times[n - 1] = math.min(times[n - 1] as number, end);
  for (let t = n - 2; t >= 0; t--) times[t] = math.min(times[t] as number, (times[t + 1] as number) - 1);
}

function* rowsOf(w: World): Generator<SyntheticRow> {
  const sampler = new UserSampler(w);
  const startTime = w.o.startTime;
  for (let u = 0; u < w.o.users; u++) {
    const n = sampler.fill(u);
    const userId = `u${u + 1}`;
    for (let t = 0; t < n; t++) {
      yield {
        userId,
        itemId: w.itemIds[sampler.items[t] as number] as string,
        rating: sampler.ratings[t] as number,
        timestamp: startTime + (sampler.times[t] as number),
      };
    }
  }
}

/**
 * Generates the interactions, one user at a time (each user's rows in time order). Options are merged over
 * {@link ML1M_LIKE} and validated eagerly: invalid options throw here, not at the first `next()`.
 */
export function generateInteractions(options?: Partial<SyntheticOptions>): Generator<SyntheticRow> {
  return rowsOf(buildWorld(resolveSyntheticOptions(options)));
}

/** The planted structure behind {@link generateInteractions} for the same options (ground truth for tests). */
export function syntheticLatents(options?: Partial<SyntheticOptions>): SyntheticLatents {
  const w = buildWorld(resolveSyntheticOptions(options));
  const user = new UserState(w);
  const load = (userIndex: number): void => {
    if (!isInteger(userIndex) || userIndex < 0 || userIndex >= w.o.users) {
      throw new Error(`user index must be an integer in [0, ${w.o.users}), got ${userIndex}`);
    }
    user.load(userIndex);
  };
  return {
    itemIds: w.itemIds,
    baseItems: w.baseItems,
    clusters: w.clusters,
    itemCluster: w.itemCluster,
    itemPopularity: w.itemWeight,
    userCounts: w.userCounts,
    userPreference(userIndex: number): Float64Array {
      load(userIndex);
      return user.prefDense.slice();
    },
    tasteDims: TASTE_DIMS,
    itemFactors: w.itemFactors,
    userTaste(userIndex: number): Float64Array {
      load(userIndex);
      return user.taste.slice();
    },
  };
}

const CHUNK_CHARS = 1 << 16;

/**
 * Writes the log to `path` as CSV (header `user_id,item_id,rating,timestamp`) or JSON lines with the same keys,
 * through a buffered stream that respects backpressure. Returns the number of rows and of distinct users and items.
 */
export async function writeSyntheticLog(
  path: string,
  options?: Partial<SyntheticOptions>,
  format: 'csv' | 'jsonl' = 'csv',
): Promise<{ rows: number; users: number; items: number }> {
  if (format !== 'csv' && format !== 'jsonl') fail('format', format, "'csv' or 'jsonl'");
  const w = buildWorld(resolveSyntheticOptions(options));
  const itemSeen = new Uint8Array(w.catalogue);
  let rows = 0;
  let users = 0;
  let items = 0;
  const csv = format === 'csv';
  function* chunks(): Generator<string> {
    const sampler = new UserSampler(w);
    const startTime = w.o.startTime;
    let chunk = csv ? 'user_id,item_id,rating,timestamp\n' : '';
    for (let u = 0; u < w.o.users; u++) {
      const n = sampler.fill(u);
      if (n > 0) users++;
      const userId = `u${u + 1}`;
      const userPrefix = csv ? `${userId},` : `{"user_id":"${userId}","item_id":"`;
      for (let t = 0; t < n; t++) {
        const item = sampler.items[t] as number;
        if (itemSeen[item] === 0) {
          itemSeen[item] = 1;
          items++;
        }
        const itemId = w.itemIds[item] as string;
        const rating = sampler.ratings[t] as number;
        const timestamp = startTime + (sampler.times[t] as number);
        chunk += csv
          ? `${userPrefix}${itemId},${rating},${timestamp}\n`
          : `${userPrefix}${itemId}","rating":${rating},"timestamp":${timestamp}}\n`;
      }
      rows += n;
      if (chunk.length >= CHUNK_CHARS) {
        yield chunk;
        chunk = '';
      }
    }
    if (chunk.length > 0) yield chunk;
  }
  await pipeline(Readable.from(chunks()), createWriteStream(path));
  return { rows, users, items };
}
