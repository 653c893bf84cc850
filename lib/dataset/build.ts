/**
 * Pure dataset building: deduplication, canonical order, id indexing, the time split, the content hash and the
 * reference statistics. No I/O here, so every rule is unit-testable.
 */
import { createHash } from 'node:crypto';
import type { InputProblem } from '../errors';
import type { EtlConfig } from './etl-config';
import type { DatasetStats, Summary } from './manifest';
import { splitBoundaries, splitOf, type Split, type SplitBoundaries } from './split';
import type { Interaction, SourcedInteraction } from './validate';

export type { SourcedInteraction };

export interface BuiltDataset {
  /** Content hash of the normalised data and the ETL config: the dataset version. */
  version: string;
  /** Canonically ordered by (ts, user, item). */
  rows: Interaction[];
  userIdx: Int32Array;
  itemIdx: Int32Array;
  split: Uint8Array;
  /** users[i] is the id of user index i (0-based). */
  users: string[];
  /** items[i - 1] is the id of item index i (1-based; 0 is the padding index models reserve). */
  items: string[];
  boundaries: SplitBoundaries;
  duplicatesDropped: number;
  splitCounts: [number, number, number];
  stats: DatasetStats;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Sorts by (ts, user, item, rating) and removes exact duplicates of (user, item, ts). */
export function dedupe(
  input: SourcedInteraction[],
  policy: EtlConfig['duplicates'],
): { rows: SourcedInteraction[]; dropped: number; problems: InputProblem[] } {
  const sorted = input.sort((a, b) => a.ts - b.ts || cmp(a.user, b.user) || cmp(a.item, b.item) || a.rating - b.rating);
  const rows: SourcedInteraction[] = [];
  const problems: InputProblem[] = [];
  for (const r of sorted) {
    const prev = rows[rows.length - 1];
    if (prev && prev.ts === r.ts && prev.user === r.user && prev.item === r.item) {
      if (policy === 'error')
        problems.push({
          file: r.file,
          line: r.line,
          field: '(record)',
          value: `${r.user} ${r.item} ${r.ts}`,
          message: `duplicates ${prev.file}:${prev.line}`,
        });
      continue;
    }
    rows.push(r);
  }
  return { rows, dropped: sorted.length - rows.length, problems };
}

/** `sources`: what the sources add to the address (lib/dataset/source.ts sourcesKey); nothing when undefined. */
export function versionHash(rows: Interaction[], cfg: EtlConfig, sources?: string): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(cfg));
  if (sources !== undefined) h.update(`\nsources ${sources}`);
  // Hashed in blocks of rows: one update per row would cost more than the hashing itself.
  const block: string[] = [];
  for (const r of rows) {
    block.push(`\n${r.user}\t${r.item}\t${r.ts}\t${Number.isNaN(r.rating) ? '' : r.rating}`);
    if (block.length === 8192) {
      h.update(block.join(''));
      block.length = 0;
    }
  }
  h.update(block.join(''));
  return h.digest('hex').slice(0, 16);
}

export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return { min: 0, p50: 0, mean: 0, p90: 0, max: 0 };
  const q = (p: number) => sorted[Math.min(n - 1, Math.floor(p * n))]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return { min: sorted[0]!, p50: q(0.5), mean: sum / n, p90: q(0.9), max: sorted[n - 1]! };
}

function topShare(counts: number[], fraction: number, total: number): number {
  const sorted = [...counts].sort((a, b) => b - a);
  const k = Math.max(1, Math.floor(sorted.length * fraction));
  return sorted.slice(0, k).reduce((s, c) => s + c, 0) / total;
}

export function computeStats(
  rows: Interaction[],
  userIdx: Int32Array,
  itemIdx: Int32Array,
  nUsers: number,
  nItems: number,
): DatasetStats {
  const perUser = new Array<number>(nUsers).fill(0);
  const perItem = new Array<number>(nItems).fill(0);
  const ratings: Record<string, number> = {};
  const perDay = new Map<number, number>();
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    perUser[userIdx[i]!]! += 1;
    perItem[itemIdx[i]! - 1]! += 1;
    if (!Number.isNaN(r.rating)) ratings[String(r.rating)] = (ratings[String(r.rating)] ?? 0) + 1;
    const day = Math.floor(r.ts / 86400);
    perDay.set(day, (perDay.get(day) ?? 0) + 1);
  }
  return {
    interactionsPerUser: summarize(perUser),
    interactionsPerItem: summarize(perItem),
    itemTop1pctShare: topShare(perItem, 0.01, rows.length),
    itemTop10pctShare: topShare(perItem, 0.1, rows.length),
    ratingHistogram: ratings,
    dailyVolume: summarize([...perDay.values()]),
    timestamp: { min: rows[0]?.ts ?? 0, max: rows[rows.length - 1]?.ts ?? 0 },
  };
}

/** Builds the normalised dataset from validated, deduplicated rows in canonical order. */
export function buildDataset(
  rows: Interaction[],
  duplicatesDropped: number,
  cfg: EtlConfig,
  sources?: string,
): BuiltDataset {
  const n = rows.length;
  const boundaries = splitBoundaries(
    rows.map((r) => r.ts),
    cfg.split.valid,
    cfg.split.test,
  );
  // Indices in order of first appearance in canonical order: deterministic for the same data.
  const userIndex = new Map<string, number>();
  const itemIndex = new Map<string, number>();
  const users: string[] = [];
  const items: string[] = [];
  const userIdx = new Int32Array(n);
  const itemIdx = new Int32Array(n);
  const split = new Uint8Array(n);
  const splitCounts: [number, number, number] = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    let u = userIndex.get(r.user);
    if (u === undefined) {
      u = users.push(r.user) - 1;
      userIndex.set(r.user, u);
    }
    let it = itemIndex.get(r.item);
    if (it === undefined) {
      it = items.push(r.item); // 1-based
      itemIndex.set(r.item, it);
    }
    userIdx[i] = u;
    itemIdx[i] = it;
    const s: Split = splitOf(r.ts, boundaries);
    split[i] = s;
    splitCounts[s] += 1;
  }
  return {
    version: versionHash(rows, cfg, sources),
    rows,
    userIdx,
    itemIdx,
    split,
    users,
    items,
    boundaries,
    duplicatesDropped,
    splitCounts,
    stats: computeStats(rows, userIdx, itemIdx, users.length, items.length),
  };
}
