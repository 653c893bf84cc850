/**
 * The embeddings bench/retrieval.ts searches: synthetic item sets with latent structure calibrated on the trained
 * models, each with user vectors of one or more styles, and the trained models' own item and user vectors. Also
 * what describes a set's difficulty for a graph index (printed with it).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { config } from '../lib/config';
import { clusteredItems, meanDirection, userQueries } from '../tests/data/embeddings';

export interface Users {
  /** The row's name: the style (or model) and the item count. */
  name: string;
  /** Measured, row-major [QUERIES, dims]. */
  queries: Float32Array;
  /** The index's depth is tuned on these (as the export tunes on its own check set), row-major. */
  tuneQueries: Float32Array;
}

/** One item matrix (one exact graph, one index per graph kind) and the users searched against it. */
export interface ItemSet {
  name: string;
  dims: number;
  /** Raw float32 file of `items` (the exact graph is built from it). */
  itemsFile: string;
  items: Float32Array;
  users: Users[];
}

/**
 * Synthetic embeddings (tests/data/embeddings.ts), shaped after the trained models whose users and items meet by
 * inner product (MovieLens-100K; their figures are printed with every set): items in clusters of power-law sizes,
 * with most of their variance in a few directions (participation ratio ~4.6; two-tower 3.0, MF 1.5) and a direction
 * they share (|item mean| ~0.7 of the mean norm, as the two-tower's). Users mix a few items plus noise: 'mf-like'
 * users keep their component along the items' mean (an MF model's users point along it: median cosine 0.97),
 * 'tower-like' users have none (a two-tower's: -0.24). 'flat' (not run by default) is the hard case: no common
 * direction and a flat spectrum (participation ratio ~20), nothing like a trained model.
 */
const STYLES = {
  'mf-like': { common: 0.6, spectrum: 0.75, alongMean: 1 },
  'tower-like': { common: 0.6, spectrum: 0.75, alongMean: 0 },
  flat: { common: 0, spectrum: 0, alongMean: 1 },
} as const;
export type Style = keyof typeof STYLES;
export const DEFAULT_STYLES: Style[] = ['mf-like', 'tower-like'];
export const isStyle = (s: string): s is Style => s in STYLES;
export const STYLE_NAMES = Object.keys(STYLES);
const SEED = 15;

/** The item sets of `n` items for these styles: styles with the same items share one set (one graph, one index). */
export async function syntheticSets(
  dir: string,
  n: number,
  dims: number,
  styles: Style[],
  queries: number,
  tuneQueries: number,
): Promise<ItemSet[]> {
  const sets = new Map<string, ItemSet>();
  for (const style of styles) {
    const { common, spectrum, alongMean } = STYLES[style];
    const key = `items-${n}-d${dims}-s${SEED}-c${common}-p${spectrum}`;
    let set = sets.get(key);
    if (!set) {
      const items = clusteredItems({
        items: n,
        dims,
        clusters: Math.round(Math.sqrt(n)),
        seed: SEED,
        common,
        spectrum,
      });
      const itemsFile = path.join(dir, `${key}.f32`);
      const bytes = await fs.stat(itemsFile).then(
        (s) => s.size,
        () => -1,
      );
      if (bytes !== items.byteLength) await fs.writeFile(itemsFile, items);
      set = { name: key, dims, itemsFile, items, users: [] };
      sets.set(key, set);
    }
    const all = userQueries(set.items, dims, { queries: queries + tuneQueries, seed: SEED + 1, alongMean });
    set.users.push({
      name: `${style}-${n}`,
      queries: all.subarray(0, queries * dims),
      tuneQueries: all.subarray(queries * dims),
    });
  }
  return [...sets.values()];
}

const readF32 = async (file: string) => {
  const buf = await fs.readFile(file);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

/** The cached trained models' embeddings (bench/retrieval_trained.py); none when bench/quality.ts has not run. */
export async function trainedSets(
  dir: string,
  families: string[],
  queries: number,
  tuneQueries: number,
): Promise<ItemSet[]> {
  const out = execFileSync(
    config().python,
    [path.join(__dirname, 'retrieval_trained.py'), dir, String(queries + tuneQueries), ...families],
    {
      cwd: path.resolve(__dirname, '..'),
      env: { ...process.env, OMP_NUM_THREADS: '1', PYTHONPATH: '.' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const found = out
    .toString()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { family: string; model: string; dims: number; items: string; queries: string });
  return Promise.all(
    found.map(async (f) => {
      const all = await readF32(f.queries);
      const name = `trained-${f.family}`;
      console.log(`${name}: ${f.model}`);
      return {
        name,
        dims: f.dims,
        itemsFile: f.items,
        items: await readF32(f.items),
        users: [{ name, queries: all.subarray(0, queries * f.dims), tuneQueries: all.subarray(queries * f.dims) }],
      };
    }),
  );
}

/**
 * The effective number of directions the items vary in: (sum of the covariance's eigenvalues)^2 / (sum of their
 * squares) = trace(C)^2 / |C|_F^2, so no eigendecomposition. On at most 20k items (every n/20k-th).
 */
export function participationRatio(items: Float32Array, dims: number): number {
  const n = items.length / dims;
  const step = Math.max(1, Math.floor(n / 20_000));
  const rows = Math.floor(n / step);
  const mean = new Float64Array(dims);
  for (let r = 0; r < rows; r++) for (let d = 0; d < dims; d++) mean[d]! += items[r * step * dims + d]! / rows;
  const cov = new Float64Array(dims * dims);
  const x = new Float64Array(dims);
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < dims; d++) x[d] = items[r * step * dims + d]! - mean[d]!;
    for (let a = 0; a < dims; a++) for (let b = 0; b < dims; b++) cov[a * dims + b]! += (x[a]! * x[b]!) / rows;
  }
  let trace = 0;
  let frobenius = 0;
  for (let a = 0; a < dims; a++) trace += cov[a * dims + a]!;
  for (const v of cov) frobenius += v * v;
  return (trace * trace) / frobenius;
}

/** What decides which graph works: how many directions the items vary in and how much they share one. */
export function itemShape(items: Float32Array, dims: number): string {
  const n = items.length / dims;
  const mean = meanDirection(items, dims);
  let along = 0;
  let norms = 0;
  for (let j = 0; j < n; j++) {
    let a = 0;
    let s = 0;
    for (let d = 0; d < dims; d++) {
      a += items[j * dims + d]! * mean[d]!;
      s += items[j * dims + d]! ** 2;
    }
    along += a / n;
    norms += Math.sqrt(s) / n;
  }
  return `participation ratio ${participationRatio(items, dims).toFixed(1)}, |item mean| / mean item norm ${(along / norms).toFixed(2)}`;
}

/** ... and how the users sit against the shared direction: the median cosine of user and item mean. */
export function userShape(items: Float32Array, dims: number, queries: Float32Array): string {
  const mean = meanDirection(items, dims);
  const cosines: number[] = [];
  for (let q = 0; q < queries.length / dims; q++) {
    let a = 0;
    let s = 0;
    for (let d = 0; d < dims; d++) {
      a += queries[q * dims + d]! * mean[d]!;
      s += queries[q * dims + d]! ** 2;
    }
    cosines.push(a / Math.sqrt(s));
  }
  cosines.sort((x, y) => x - y);
  return `median cos(user, item mean) ${cosines[Math.floor(cosines.length / 2)]!.toFixed(2)}`;
}
