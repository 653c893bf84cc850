/**
 * Seeded synthetic embeddings with latent structure, for the retrieval tests and bench/retrieval.ts. Uniform random
 * vectors are the worst case for a nearest-neighbour graph and nothing like a trained model's; trained item
 * embeddings cluster by topic with very unequal topic sizes and carry a popularity-like norm, and a user vector is
 * close to a mixture of the items the user consumed. So:
 *
 * - items: `clusters` centres (standard normal / sqrt(dims), norm ~1, plus `common` x a unit direction they all
 *   share); cluster c has prior weight (c + 1)^-zipf (power-law sizes); an item is its centre plus `noise` x
 *   standard normal / sqrt(dims), times a log-normal norm factor exp(normSigma x N(0, 1)) (inner-product search
 *   sees it, as it sees a trained model's popular items), coordinate d scaled by (d + 1)^-spectrum;
 * - queries ("users"): the mean of 1..`mix` random items' vectors (items drawn uniformly, so big clusters are
 *   visited more) plus `noise` x standard normal / sqrt(dims), their component along the items' mean direction
 *   optionally scaled by `alongMean`.
 */
import { Rng, hashSeed } from './random';

export interface ItemOptions {
  items: number;
  dims: number;
  clusters: number;
  seed: number;
  /** Cluster-size power law exponent; default 1. */
  zipf?: number;
  /** Within-cluster spread relative to the centres' norm; default 0.5. */
  noise?: number;
  /** Log-normal sigma of the per-item norm factor; default 0.25. */
  normSigma?: number;
  /**
   * A direction every item shares, with this norm relative to the centres' (before the norm factor); default 0.
   * Trained towers have one: a two-tower's item mean is ~70% of its items' norm (bench/retrieval.ts's trained rows).
   */
  common?: number;
  /**
   * Coordinate d of every item is multiplied by (d + 1)^-spectrum; default 0 (flat). Trained embeddings put most of
   * their variance in a few directions (participation ratio of the item covariance's eigenvalues, MovieLens-100K:
   * two-tower 3.0, MF 1.5; flat 64-d clusters: ~20), which is what makes graph search easy on them.
   */
  spectrum?: number;
}

export interface QueryOptions {
  queries: number;
  seed: number;
  /** At most this many items per user vector; default 3. */
  mix?: number;
  /** Noise added to each user vector; default 0.3. */
  noise?: number;
  /**
   * Each user vector's component along the items' mean direction is multiplied by this; default 1 (as mixed). An
   * MF model's users point along its items' mean (median cosine 0.79 on MovieLens-100K), a two-tower's do not
   * (-0.24): 0 gives users like the latter.
   */
  alongMean?: number;
}

/** Row-major float32 [items, dims] (row j = item j + 1). */
export function clusteredItems(o: ItemOptions): Float32Array {
  const { items, dims, clusters, zipf = 1, noise = 0.5, normSigma = 0.25, common = 0, spectrum = 0 } = o;
  const rng = new Rng(hashSeed(o.seed, 1));
  const scale = 1 / Math.sqrt(dims);
  // Its own stream: `common` 0 leaves the items as they were without it.
  const sharedRng = new Rng(hashSeed(o.seed, 4));
  const shared = new Float64Array(dims);
  for (let d = 0; d < dims; d++) shared[d] = sharedRng.normal();
  const sharedNorm = Math.hypot(...shared);
  const centres = new Float64Array(clusters * dims);
  for (let i = 0; i < centres.length; i++)
    centres[i] = rng.normal() * scale + (common * shared[i % dims]!) / sharedNorm;
  // Cumulative cluster weights, for drawing an item's cluster by binary search.
  const cumulative = new Float64Array(clusters);
  let total = 0;
  for (let c = 0; c < clusters; c++) cumulative[c] = total += (c + 1) ** -zipf;
  const decay = Float64Array.from({ length: dims }, (_, d) => (d + 1) ** -spectrum);
  const out = new Float32Array(items * dims);
  for (let j = 0; j < items; j++) {
    const u = rng.next() * total;
    let lo = 0;
    let hi = clusters - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    const norm = Math.exp(normSigma * rng.normal());
    for (let d = 0; d < dims; d++)
      out[j * dims + d] = norm * decay[d]! * (centres[lo * dims + d]! + noise * scale * rng.normal());
  }
  return out;
}

/** Row-major float32 [queries, dims]: user-like vectors over `items` (row-major, `dims` columns). */
export function userQueries(items: Float32Array, dims: number, o: QueryOptions): Float32Array {
  const { queries, mix = 3, noise = 0.3, alongMean = 1 } = o;
  const rng = new Rng(hashSeed(o.seed, 2));
  const n = items.length / dims;
  const scale = 1 / Math.sqrt(dims);
  const out = new Float32Array(queries * dims);
  for (let q = 0; q < queries; q++) {
    const m = 1 + rng.int(mix);
    for (let i = 0; i < m; i++) {
      const row = rng.int(n) * dims;
      for (let d = 0; d < dims; d++) out[q * dims + d]! += items[row + d]! / m;
    }
    for (let d = 0; d < dims; d++) out[q * dims + d]! += noise * scale * rng.normal();
  }
  if (alongMean !== 1) {
    const mean = meanDirection(items, dims);
    for (let q = 0; q < queries; q++) {
      let along = 0;
      for (let d = 0; d < dims; d++) along += out[q * dims + d]! * mean[d]!;
      for (let d = 0; d < dims; d++) out[q * dims + d]! -= (1 - alongMean) * along * mean[d]!;
    }
  }
  return out;
}

/** The unit vector along the mean of the rows. */
export function meanDirection(rows: Float32Array, dims: number): Float64Array {
  const mean = new Float64Array(dims);
  for (let i = 0; i < rows.length; i++) mean[i % dims]! += rows[i]!;
  const norm = Math.hypot(...mean);
  return mean.map((v) => v / norm);
}

/** Independent standard normal vectors, row-major [rows, dims]: no structure at all, the hard case for a graph. */
export function gaussianRows(rows: number, dims: number, seed: number): Float32Array {
  const rng = new Rng(hashSeed(seed, 3));
  const out = new Float32Array(rows * dims);
  for (let i = 0; i < out.length; i++) out[i] = rng.normal();
  return out;
}
