import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ML1M_LIKE,
  generateInteractions,
  resolveSyntheticOptions,
  syntheticLatents,
  writeSyntheticLog,
  type SyntheticOptions,
  type SyntheticRow,
} from '../../data/synthetic';
import { Rng, hashSeed } from '../../data/random';

const SMALL: Partial<SyntheticOptions> = {
  users: 300,
  items: 1000,
  interactions: 15_000,
  minPerUser: 20,
  clusters: 8,
  seed: 7,
  spanDays: 365,
};

function collect(options: Partial<SyntheticOptions>): SyntheticRow[] {
  return [...generateInteractions(options)];
}

function index(id: string): number {
  return Number(id.slice(1)) - 1;
}

function countBy<T>(values: Iterable<T>): Map<T, number> {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

/** Share of the rows held by the most frequent 10% of the distinct items. */
function top10Share(rows: SyntheticRow[]): number {
  const counts = [...countBy(rows.map((r) => r.itemId)).values()].sort((a, b) => b - a);
  const top = counts.slice(0, Math.round(counts.length / 10)).reduce((a, b) => a + b, 0);
  return top / rows.length;
}

function topItems(rows: SyntheticRow[], k: number): Set<string> {
  const counts = [...countBy(rows.map((r) => r.itemId)).entries()].sort(
    (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1),
  );
  return new Set(counts.slice(0, k).map(([id]) => id));
}

function byUser(rows: SyntheticRow[]): Map<string, SyntheticRow[]> {
  const users = new Map<string, SyntheticRow[]>();
  for (const r of rows) {
    const list = users.get(r.userId);
    if (list) list.push(r);
    else users.set(r.userId, [r]);
  }
  for (const list of users.values()) list.sort((a, b) => a.timestamp - b.timestamp);
  return users;
}

/** Mean over users of the share of their rows in the topics they preferred in `latents`, and the share by chance. */
function preferredTopicShare(rows: SyntheticRow[], options: Partial<SyntheticOptions>) {
  const latents = syntheticLatents(options);
  const topicWeight = new Float64Array(latents.clusters);
  latents.itemPopularity.forEach((w, i) => {
    const c = latents.itemCluster[i] as number;
    topicWeight[c] = (topicWeight[c] as number) + w;
  });
  const totalWeight = topicWeight.reduce((a, b) => a + b, 0);
  let observed = 0;
  let chance = 0;
  const users = byUser(rows);
  for (const [userId, list] of users) {
    const pref = latents.userPreference(index(userId));
    const inPreferred = list.filter((r) => (pref[latents.itemCluster[index(r.itemId)] as number] as number) > 0).length;
    observed += inPreferred / list.length;
    chance += pref.reduce((acc, p, c) => (p > 0 ? acc + (topicWeight[c] as number) / totalWeight : acc), 0);
  }
  return { observed: observed / users.size, chance: chance / users.size };
}

describe('random', () => {
  it('is deterministic per seed and roughly uniform', () => {
    const a = new Rng(1);
    const b = new Rng(1);
    const c = new Rng(2);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c.next())).not.toEqual(xs);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(hashSeed(1, 2)).not.toBe(hashSeed(2, 1));
    expect(hashSeed(2 ** 40 + 1)).not.toBe(hashSeed(1));
  });
});

describe('generateInteractions', () => {
  const rows = collect(SMALL);

  it('is deterministic for a seed and differs across seeds', () => {
    expect(collect(SMALL)).toEqual(rows);
    const other = collect({ ...SMALL, seed: 8 });
    expect(other.length).toBe(rows.length);
    const same = other.filter((r, i) => r.itemId === rows[i]?.itemId && r.timestamp === rows[i]?.timestamp).length;
    expect(same / rows.length).toBeLessThan(0.05);
  });

  it('has the requested users, items, total and minimum per user', () => {
    expect(rows.length).toBe(15_000);
    const perUser = countBy(rows.map((r) => r.userId));
    expect(perUser.size).toBe(300);
    expect(Math.min(...perUser.values())).toBeGreaterThanOrEqual(20);
    const items = new Set(rows.map((r) => r.itemId));
    expect(items.size).toBeLessThanOrEqual(1000);
    expect(items.size).toBeGreaterThan(900);
    const badIds = rows.filter(
      (r) =>
        !/^u[1-9]\d*$/.test(r.userId) ||
        !/^i[1-9]\d*$/.test(r.itemId) ||
        index(r.userId) >= 300 ||
        index(r.itemId) >= 1000,
    );
    expect(badIds).toEqual([]);
  });

  it('produces integer ratings 1..5 and integer timestamps inside the window, unique per user', () => {
    const start = ML1M_LIKE.startTime;
    const end = start + 365 * 86400;
    const ratings = countBy(rows.map((r) => r.rating));
    expect([...ratings.keys()].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(rows.filter((r) => !Number.isInteger(r.timestamp) || r.timestamp < start || r.timestamp >= end)).toEqual([]);
    expect(new Set(rows.map((r) => `${r.userId}:${r.itemId}`)).size).toBe(rows.length);
    expect(new Set(rows.map((r) => `${r.userId}:${r.timestamp}`)).size).toBe(rows.length);
    // Users start at different times: first activity spread over the window.
    const firsts = [...byUser(rows).values()].map((list) => (list[0] as SyntheticRow).timestamp);
    expect(Math.max(...firsts) - Math.min(...firsts)).toBeGreaterThan(180 * 86400);
  });

  it('has heavy-tailed item popularity and user activity', () => {
    expect(top10Share(rows)).toBeGreaterThan(0.4);
    const perUser = [...countBy(rows.map((r) => r.userId)).values()].sort((a, b) => a - b);
    const median = perUser[perUser.length >> 1] as number;
    expect(rows.length / perUser.length).toBeGreaterThan(1.3 * median);
  });

  it('plants topic preferences far above chance', () => {
    const { observed, chance } = preferredTopicShare(rows, SMALL);
    expect(observed).toBeGreaterThan(0.7);
    expect(observed).toBeGreaterThan(2 * chance);
  });

  it('plants sequential structure: consecutive items in a session share a topic more than preferences explain', () => {
    const latents = syntheticLatents(SMALL);
    const topic = (r: SyntheticRow): number => latents.itemCluster[index(r.itemId)] as number;
    /** Share of consecutive pairs less than an hour apart (same session) whose items share a topic. */
    const sameTopicInSession = (data: SyntheticRow[]): number => {
      let same = 0;
      let pairs = 0;
      for (const list of byUser(data).values()) {
        for (let t = 1; t < list.length; t++) {
          const a = list[t - 1] as SyntheticRow;
          const b = list[t] as SyntheticRow;
          if (b.timestamp - a.timestamp > 3600) continue;
          pairs++;
          if (topic(a) === topic(b)) same++;
        }
      }
      return same / pairs;
    };
    const withSequence = sameTopicInSession(rows);
    const withoutSequence = sameTopicInSession(collect({ ...SMALL, sequentialStrength: 0 }));
    expect(withSequence).toBeGreaterThan(withoutSequence + 0.1);
  });

  it('plants taste vectors: chosen items align with the user taste', () => {
    const meanCosine = (options: Partial<SyntheticOptions>): number => {
      const latents = syntheticLatents(options);
      const d = latents.tasteDims;
      let sum = 0;
      const data = collect(options);
      const tastes = new Map<string, Float64Array>();
      for (const r of data) {
        let taste = tastes.get(r.userId);
        if (!taste) {
          taste = latents.userTaste(index(r.userId));
          tastes.set(r.userId, taste);
        }
        const item = index(r.itemId);
        for (let k = 0; k < d; k++) sum += (taste[k] as number) * (latents.itemFactors[item * d + k] as number);
      }
      return sum / data.length;
    };
    expect(meanCosine(SMALL)).toBeGreaterThan(0.08);
    expect(Math.abs(meanCosine({ ...SMALL, tasteStrength: 0 }))).toBeLessThan(0.05);
    expect(() => syntheticLatents(SMALL).userTaste(300)).toThrow(
      /user index must be an integer in \[0, 300\), got 300/,
    );
  });

  it('is learnable: item co-occurrence beats popularity on the held-out last item', () => {
    const n = 500;
    const users = byUser(collect({ ...SMALL, users: 600, items: n, interactions: 30_000 }));
    const cooc = new Float64Array(n * n);
    const count = new Float64Array(n);
    const histories: number[][] = [];
    const heldOut: number[] = [];
    for (const list of users.values()) {
      const items = list.map((r) => index(r.itemId));
      heldOut.push(items.pop() as number);
      histories.push(items);
      for (const i of items) {
        count[i] = (count[i] as number) + 1;
        for (const j of items) if (i !== j) cooc[i * n + j] = (cooc[i * n + j] as number) + 1;
      }
    }
    /** Whether `target` is among the 10 best-scored unseen items (ties broken by index). */
    const inTop10 = (score: ArrayLike<number>, seen: Set<number>, target: number): boolean => {
      const s = score[target] as number;
      let better = 0;
      for (let j = 0; j < n && better < 10; j++) {
        if (j === target || seen.has(j)) continue;
        const x = score[j] as number;
        if (x > s || (x === s && j < target)) better++;
      }
      return better < 10;
    };
    // Cosine-normalised co-occurrence (item-kNN).
    const similarity = cooc.map(
      (c, ij) => c / Math.sqrt(((count[Math.floor(ij / n)] as number) + 1) * ((count[ij % n] as number) + 1)),
    );
    let popularityHits = 0;
    let cooccurrenceHits = 0;
    histories.forEach((history, u) => {
      const seen = new Set(history);
      const target = heldOut[u] as number;
      if (inTop10(count, seen, target)) popularityHits++;
      const score = new Float64Array(n);
      for (const i of history) {
        for (let j = 0, row = i * n; j < n; j++) score[j] = (score[j] as number) + (similarity[row + j] as number);
      }
      if (inTop10(score, seen, target)) cooccurrenceHits++;
    });
    expect(popularityHits).toBeGreaterThan(30);
    expect(cooccurrenceHits).toBeGreaterThan(1.3 * popularityHits);
  });

  it('calibrates to MovieLens-1M with the defaults', () => {
    const started = Date.now();
    const perUser = new Int32Array(6040);
    const perItem = new Int32Array(3706);
    let total = 0;
    let ratingSum = 0;
    for (const r of generateInteractions()) {
      total++;
      ratingSum += r.rating;
      const u = index(r.userId);
      const i = index(r.itemId);
      perUser[u] = (perUser[u] as number) + 1;
      perItem[i] = (perItem[i] as number) + 1;
    }
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(5000);
    expect(perUser.every((c) => c > 0)).toBe(true);
    expect(perItem.every((c) => c > 0)).toBe(true);
    expect(Math.abs(total - 1_000_209) / 1_000_209).toBeLessThan(0.02);
    const users = [...perUser].sort((a, b) => a - b);
    expect(users[0]).toBeGreaterThanOrEqual(20);
    const median = users[users.length >> 1] as number;
    expect(median).toBeGreaterThan(80);
    expect(median).toBeLessThan(115);
    expect(total / users.length).toBeGreaterThan(150);
    expect(total / users.length).toBeLessThan(180);
    const items = [...perItem].sort((a, b) => b - a);
    const top = items.slice(0, 371).reduce((a, b) => a + b, 0);
    expect(top / total).toBeGreaterThan(0.4);
    expect(ratingSum / total).toBeGreaterThan(3.45);
    expect(ratingSum / total).toBeLessThan(3.7);
  });
});

describe('writeSyntheticLog', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'synthetic-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes byte-identical CSV for the same options', async () => {
    const a = join(dir, 'a.csv');
    const b = join(dir, 'b.csv');
    const result = await writeSyntheticLog(a, SMALL);
    await writeSyntheticLog(b, SMALL, 'csv');
    expect(result).toEqual({ rows: 15_000, users: 300, items: new Set(collect(SMALL).map((r) => r.itemId)).size });
    const text = readFileSync(a, 'utf8');
    expect(readFileSync(b, 'utf8')).toBe(text);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('user_id,item_id,rating,timestamp');
    expect(lines.length).toBe(15_001);
    const first = collect(SMALL)[0] as SyntheticRow;
    expect(lines[1]).toBe(`${first.userId},${first.itemId},${first.rating},${first.timestamp}`);
  });

  it('writes JSON lines with the same keys', async () => {
    const path = join(dir, 'a.jsonl');
    const options = { ...SMALL, users: 50, interactions: 2000 };
    const result = await writeSyntheticLog(path, options, 'jsonl');
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(result.rows);
    const expected = collect(options).map((r) => ({
      user_id: r.userId,
      item_id: r.itemId,
      rating: r.rating,
      timestamp: r.timestamp,
    }));
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual(expected);
  });

  it('rejects invalid options before creating the file', async () => {
    const path = join(dir, 'invalid.csv');
    await expect(writeSyntheticLog(path, { users: 0 })).rejects.toThrow(/users.*got 0/);
    expect(existsSync(path)).toBe(false);
  });
});

describe('options validation', () => {
  it.each<[Partial<SyntheticOptions>, RegExp]>([
    [{ users: -5 }, /users must be a positive integer, got -5/],
    [{ items: 1.5 }, /items must be a positive integer, got 1.5/],
    [{ clusters: 0 }, /clusters must be a positive integer, got 0/],
    [{ interactions: 1000 }, /interactions must be at least users x minPerUser = 120800.*got 1000/],
    [{ users: 10, items: 100, interactions: 10_000 }, /interactions must be at most users x 75 = 750.*got 10000/],
    [{ minPerUser: 5000 }, /minPerUser must be at most items \(3706\).*got 5000/],
    [{ items: 10, clusters: 11, minPerUser: 1, users: 1, interactions: 5 }, /clusters must be at most items.*got 11/],
    [{ seed: 0.5 }, /seed must be an integer, got 0.5/],
    [{ startTime: -1 }, /startTime .*got -1/],
    [{ spanDays: 0 }, /spanDays must be a positive number, got 0/],
    [{ popularityShift: 2 }, /popularityShift must be a number in \[0, 1\], got 2/],
    [{ preferenceShift: -0.1 }, /preferenceShift .*got -0.1/],
    [{ newItemsFraction: 0.95 }, /newItemsFraction must be a number in \[0, 0.9\], got 0.95/],
    [{ volumeScale: 0 }, /volumeScale must be a positive number, got 0/],
    [{ volumeScale: 0.1 }, /interactions must be at least .*after volumeScale 0.1.*got 1000209/],
    [{ batch: -1 }, /batch must be a non-negative integer, got -1/],
    [{ users: Number.NaN }, /users must be a number, got NaN/],
    [{ colour: 1 } as unknown as Partial<SyntheticOptions>, /unknown synthetic option colour/],
  ])('rejects %j', (options, message) => {
    expect(() => generateInteractions(options)).toThrow(message);
  });

  it('merges over the ML-1M defaults and ignores undefined values', () => {
    expect(resolveSyntheticOptions({ users: undefined, seed: 3 })).toEqual({ ...ML1M_LIKE, seed: 3 });
    expect(Object.isFrozen(ML1M_LIKE)).toBe(true);
  });
});

describe('drift knobs', () => {
  const base = collect(SMALL);

  it('defaults to no drift: explicit zero knobs give identical output', () => {
    expect(
      collect({ ...SMALL, popularityShift: 0, preferenceShift: 0, newItemsFraction: 0, volumeScale: 1, batch: 0 }),
    ).toEqual(base);
  });

  it('popularityShift re-ranks which items are popular', () => {
    const latents = syntheticLatents(SMALL);
    const partly = syntheticLatents({ ...SMALL, popularityShift: 0.3 });
    const changed = latents.itemPopularity.filter((w, i) => w !== partly.itemPopularity[i]).length / 1000;
    expect(changed).toBeGreaterThan(0.2);
    expect(changed).toBeLessThan(0.32);
    const shifted = collect({ ...SMALL, popularityShift: 1 });
    const before = topItems(base, 40);
    const after = topItems(shifted, 40);
    const overlap = [...after].filter((id) => before.has(id)).length / 40;
    expect(overlap).toBeLessThan(0.35);
    // Another batch without the shift keeps the same hits.
    const again = topItems(collect({ ...SMALL, batch: 1 }), 40);
    expect([...again].filter((id) => before.has(id)).length / 40).toBeGreaterThan(0.7);
    expect(top10Share(shifted)).toBeGreaterThan(0.4);
  });

  it('preferenceShift moves users away from their original topics', () => {
    const original = preferredTopicShare(base, SMALL);
    const half = collect({ ...SMALL, preferenceShift: 0.5 });
    const full = collect({ ...SMALL, preferenceShift: 1 });
    // Measured against the original (unshifted) preferences.
    const halfShare = preferredTopicShare(half, SMALL).observed;
    const fullShare = preferredTopicShare(full, SMALL).observed;
    expect(halfShare).toBeLessThan(original.observed - 0.1);
    expect(fullShare).toBeLessThan(halfShare - 0.05);
    // ... and towards the new ones.
    expect(preferredTopicShare(full, { ...SMALL, preferenceShift: 1 }).observed).toBeGreaterThan(0.7);
    const mixed = syntheticLatents({ ...SMALL, preferenceShift: 0.5 }).userPreference(0);
    expect(mixed.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
  });

  it('newItemsFraction adds cold items with new ids that take about that share', () => {
    const options = { ...SMALL, newItemsFraction: 0.2 };
    const latents = syntheticLatents(options);
    expect(latents.baseItems).toBe(1000);
    expect(latents.itemIds.length).toBe(1250);
    expect(latents.itemIds[1000]).toBe('i1001');
    // The base world is unchanged.
    expect(latents.itemCluster.slice(0, 1000)).toEqual(syntheticLatents(SMALL).itemCluster);
    const rows = collect(options);
    const share = rows.filter((r) => index(r.itemId) >= 1000).length / rows.length;
    expect(share).toBeGreaterThan(0.12);
    expect(share).toBeLessThan(0.28);
    expect(base.some((r) => index(r.itemId) >= 1000)).toBe(false);
  });

  it('volumeScale scales the number of interactions', () => {
    const half = collect({ ...SMALL, volumeScale: 0.5 });
    expect(half.length).toBe(7_500);
    expect(new Set(half.map((r) => r.userId)).size).toBe(300);
    expect(collect({ ...SMALL, volumeScale: 1.5 }).length).toBe(22_500);
  });

  it('a later batch continues in time from the same world', () => {
    const start = ML1M_LIKE.startTime + 365 * 86400;
    const later = collect({ ...SMALL, batch: 1, startTime: start, spanDays: 30, interactions: 3000, minPerUser: 1 });
    expect(later.length).toBe(3000);
    expect(Math.min(...later.map((r) => r.timestamp))).toBeGreaterThanOrEqual(start);
    expect(Math.max(...later.map((r) => r.timestamp))).toBeLessThan(start + 30 * 86400);
    expect(Math.max(...base.map((r) => r.timestamp))).toBeLessThan(start);
    // Same world: the users still follow their preferences.
    expect(preferredTopicShare(later, SMALL).observed).toBeGreaterThan(0.7);
  });
});
