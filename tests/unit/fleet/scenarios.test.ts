/**
 * The simulator's drift scenarios as pure functions with a seeded random (no server): each one's effect on the calls
 * it plans (who calls, with which history, how the answer is judged) at the size asked, nothing drawn and nothing
 * changed without a scenario, the same calls for the same seed; the catalogue read from a dataset copy's Parquet
 * files; and the wiring through simulate() against a server with a stand-in model, seen from the server's side.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildDataset, dedupe } from '../../../lib/dataset/build';
import { EtlConfig } from '../../../lib/dataset/etl-config';
import { writeDatasetParquet } from '../../../lib/dataset/write-parquet';
import { simulate } from '../../../fleet/simulate/run';
import {
  DEFAULT_SHIFT,
  NEW_ITEM_POOL,
  NEW_USER_POOL,
  checkShift,
  feedbackFor,
  parseScenarioName,
  planCall,
  prepareScenario,
  type Catalogue,
  type PlannedCall,
  type Scenario,
  type ScenarioName,
} from '../../../fleet/simulate/scenarios';
import { loadCatalogue, type SimUser } from '../../../fleet/simulate/workload';
import { LoadedModel } from '../../../serving/loaded-model';
import type { ModelLoader } from '../../../serving/model-loader';
import { ModelPool } from '../../../serving/model-pool';
import type { ModelRef } from '../../../serving/model-ref';
import type { FeedbackRequest, RecommendRequest } from '../../../serving/proto';
import { startServer } from '../../../serving/server';
import { Rng } from '../../data/random';
import { FakeRanker, fakeCatalog, fakeServable } from '../serving/fakes';

/** Seeded uniform draws from the tests' generator, so every run of these tests draws the same numbers. */
function seeded(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

// 100 items, i0 the most popular (Zipf-like counts), i99 the least; the long tail is i50..i99.
const catalogue: Catalogue = {
  items: Array.from({ length: 100 }, (_, i) => `i${i}`),
  counts: Array.from({ length: 100 }, (_, i) => Math.round(1000 / (i + 1))),
};
const rank = (id: string) => Number(id.slice(1));
// 2,000 users whose histories are 10 head items (i0..i9) and whose held-out item is i3.
const users: SimUser[] = Array.from({ length: 2000 }, (_, k) => ({
  userId: `u${k}`,
  history: Array.from({ length: 10 }, (_, j) => `i${(k + j) % 10}`),
  heldOut: new Set(['i3']),
}));
const CALLS = 10_000;

/** CALLS calls as simulate() plans them: a random user, then the scenario's call for that user. */
function plan(scenario: Scenario | undefined, seed = 1): { user: SimUser; call: PlannedCall }[] {
  const random = seeded(seed);
  return Array.from({ length: CALLS }, () => {
    const user = users[Math.floor(random() * users.length)]!;
    return { user, call: planCall(user, scenario, random) };
  });
}
const scenario = (name: ScenarioName, shift: number) => prepareScenario(name, shift, catalogue);
const share = (xs: readonly unknown[], n = CALLS) => xs.length / n;

test('without a scenario each call is the user as replayed before, and nothing more is drawn', () => {
  let draws = 0;
  const random = () => (draws++, 0.5);
  for (const u of users.slice(0, 50)) {
    const call = planCall(u, undefined, random);
    expect(call).toEqual({ userId: u.userId, history: u.history, heldOut: u.heldOut, shifted: false });
    expect(call.history).toBe(u.history); // no copy
  }
  expect(draws).toBe(0);
  // Feedback as before: a click on the first held-out item returned, else an impression of the top item.
  const call = planCall(users[0]!, undefined, random);
  expect(feedbackFor(call, [{ item_id: 'x' }, { item_id: 'i3' }], true)).toEqual({
    hit: 'i3',
    feedback: { item_id: 'i3', event: 'FEEDBACK_EVENT_CLICK' },
  });
  expect(feedbackFor(call, [{ item_id: 'x' }], true)).toEqual({
    hit: undefined,
    feedback: { item_id: 'x', event: 'FEEDBACK_EVENT_IMPRESSION' },
  });
  expect(feedbackFor(call, [{ item_id: 'x' }], false)).toEqual({ hit: undefined });
  expect(feedbackFor(call, [], true)).toEqual({ hit: undefined });
});

test('popularity-shift: a share s of calls carry long-tail histories of the same length', () => {
  const calls = plan(scenario('popularity-shift', 0.3));
  const shifted = calls.filter((c) => c.call.shifted);
  expect(share(shifted)).toBeGreaterThan(0.28);
  expect(share(shifted)).toBeLessThan(0.32);
  for (const { user, call } of calls) {
    expect(call.userId).toBe(user.userId);
    expect(call.heldOut).toBe(user.heldOut);
    if (!call.shifted) expect(call.history).toBe(user.history);
    else {
      expect(call.history).toHaveLength(user.history.length);
      for (const id of call.history) expect(rank(id)).toBeGreaterThanOrEqual(50);
    }
  }
  // Uniform over the tail: the shifted histories' items cover it, each about equally often.
  const seen = new Map<string, number>();
  for (const { call } of shifted) for (const id of call.history) seen.set(id, (seen.get(id) ?? 0) + 1);
  expect(seen.size).toBe(50);
  const per = (shifted.length * 10) / 50;
  for (const n of seen.values()) expect(Math.abs(n - per) / per).toBeLessThan(0.25);
});

test('new-items: a share s of answers are clicks on new items, and those histories end with new ids', () => {
  const s = scenario('new-items', 0.4);
  const calls = plan(s);
  const shifted = calls.filter((c) => c.call.shifted);
  expect(share(shifted)).toBeGreaterThan(0.38);
  expect(share(shifted)).toBeLessThan(0.42);
  const known = new Set(catalogue.items);
  const isNew = (id: string) => /^new-\d+$/.test(id) && Number(id.slice(4)) < NEW_ITEM_POOL && !known.has(id);
  const freshCounts = new Set<number>();
  for (const { user, call } of calls) {
    if (!call.shifted) {
      expect(call.clickItem).toBeUndefined();
      expect(call.history).toBe(user.history);
      continue;
    }
    expect(isNew(call.clickItem!)).toBe(true);
    // Whatever the model returned, the answer's feedback is that click.
    expect(feedbackFor(call, [{ item_id: 'i3' }], true).feedback).toEqual({
      item_id: call.clickItem,
      event: 'FEEDBACK_EVENT_CLICK',
    });
    // Same length: the newest items are new ids, before them the user's most recent real ones.
    expect(call.history).toHaveLength(user.history.length);
    const fresh = call.history.filter(isNew).length;
    freshCounts.add(fresh);
    expect(call.history.slice(-fresh).every(isNew)).toBe(true);
    expect(call.history.slice(0, -fresh)).toEqual(user.history.slice(fresh));
  }
  expect([...freshCounts].sort()).toEqual([1, 2, 3]);
  // A history shorter than the new ids keeps its latest real item.
  const short = { userId: 'short', history: ['i7'], heldOut: new Set<string>() };
  const r = planCall(short, scenario('new-items', 1), seeded(3));
  expect(r.history[0]).toBe('i7');
  expect(r.history.slice(1).every(isNew)).toBe(true);
});

test('user-mix: a share s of calls come from unknown users with 0-2 popular items', () => {
  const calls = plan(scenario('user-mix', 0.25));
  const strangers = calls.filter((c) => c.call.shifted);
  expect(share(strangers)).toBeGreaterThan(0.23);
  expect(share(strangers)).toBeLessThan(0.27);
  const lengths = new Map<number, number>();
  const drawn: string[] = [];
  for (const { user, call } of calls) {
    if (!call.shifted) {
      expect(call.userId).toBe(user.userId);
      continue;
    }
    expect(call.userId).toMatch(/^new-user-\d+$/);
    expect(Number(call.userId.slice(9))).toBeLessThan(NEW_USER_POOL);
    expect(call.heldOut).toBe(user.heldOut); // a newcomer with the tastes of the real user drawn
    lengths.set(call.history.length, (lengths.get(call.history.length) ?? 0) + 1);
    drawn.push(...call.history);
  }
  expect([...lengths.keys()].sort()).toEqual([0, 1, 2]);
  for (const n of lengths.values()) expect(n / strangers.length).toBeGreaterThan(0.28);
  // Drawn by popularity: i0 alone holds ~19% of the training interactions; uniform draws would give 1%.
  const headShare = drawn.filter((id) => id === 'i0').length / drawn.length;
  expect(headShare).toBeGreaterThan(0.15);
  expect(headShare).toBeLessThan(0.23);
  expect(drawn.reduce((a, id) => a + rank(id), 0) / drawn.length).toBeLessThan(25);
  // Many distinct strangers, spread over sticky assignments.
  expect(new Set(strangers.map((c) => c.call.userId)).size).toBeGreaterThan(800);
});

test('degrade: for a share s of users (always the same ones) clicks are judged against random items, CTR drops by ~s', () => {
  // A perfect model: it always returns the user's held-out item.
  const answered = (calls: { call: PlannedCall }[]) =>
    calls.filter(({ call }) => feedbackFor(call, [{ item_id: 'i3' }], true).feedback?.event === 'FEEDBACK_EVENT_CLICK')
      .length / calls.length;
  expect(answered(plan(undefined))).toBe(1);
  const calls = plan(scenario('degrade', 0.3));
  const ctr = answered(calls);
  expect(ctr).toBeGreaterThan(0.64);
  expect(ctr).toBeLessThan(0.76);
  const degraded = new Map<string, boolean>();
  for (const { user, call } of calls) {
    expect(call.userId).toBe(user.userId);
    expect(call.history).toBe(user.history);
    expect(degraded.get(user.userId) ?? call.shifted).toBe(call.shifted); // sticky per user
    degraded.set(user.userId, call.shifted);
    if (call.shifted) {
      expect(call.heldOut.size).toBe(1);
      expect(catalogue.items).toContain([...call.heldOut][0]);
    }
  }
  const flags = [...degraded.values()];
  expect(flags.filter(Boolean).length / flags.length).toBeGreaterThan(0.26);
  expect(flags.filter(Boolean).length / flags.length).toBeLessThan(0.34);
});

test('the same seed plans the same calls; the size knob scales every scenario', () => {
  for (const name of ['popularity-shift', 'new-items', 'user-mix', 'degrade'] as const) {
    const a = plan(scenario(name, 0.5), 7).map(({ call }) => ({ ...call, heldOut: [...call.heldOut] }));
    const b = plan(scenario(name, 0.5), 7).map(({ call }) => ({ ...call, heldOut: [...call.heldOut] }));
    expect(a).toEqual(b);
    const small = share(plan(scenario(name, 0.1)).filter((c) => c.call.shifted));
    const all = share(plan(scenario(name, 1)).filter((c) => c.call.shifted));
    expect(small).toBeGreaterThan(0.07);
    expect(small).toBeLessThan(0.13);
    expect(all).toBe(1);
  }
});

test('names, sizes and catalogues are checked, naming the flag and the value', () => {
  expect(parseScenarioName('--scenario', 'user-mix')).toBe('user-mix');
  expect(() => parseScenarioName('--scenario', 'popularity')).toThrow(
    '--scenario must be one of popularity-shift, new-items, user-mix, degrade, got "popularity"',
  );
  expect(checkShift('--shift', 1)).toBe(1);
  expect(DEFAULT_SHIFT).toBe(0.5);
  for (const bad of [0, -0.1, 1.5, Number.NaN])
    expect(() => checkShift('--shift', bad)).toThrow(`--shift must be a number in (0, 1], got ${bad}`);
  expect(() => prepareScenario('degrade', 0.5, { items: [], counts: [] })).toThrow('the catalogue has no items');
  expect(() => prepareScenario('degrade', 0.5, { items: ['a', 'b'], counts: [1, 2] })).toThrow(
    'the catalogue is not sorted by popularity (item b)',
  );
  expect(() => prepareScenario('new-items', 0.5, { items: ['a', 'new-3'], counts: [2, 1] })).toThrow(
    'the catalogue already has an item new-3',
  );
});

test('loadCatalogue reads every item of a dataset copy with its training interactions, most popular first', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sim-catalogue-'));
  try {
    // r first and once, then p in most interactions and q in some; z only in the last 40% (valid and test splits), so
    // it has no training interaction.
    const rows = [{ user: 'u0', item: 'r', ts: 999, rating: 1 }];
    for (let t = 0; t < 40; t++)
      rows.push({ user: `u${t % 6}`, item: t % 4 === 3 ? 'q' : 'p', ts: 1000 + t, rating: 1 });
    for (let t = 0; t < 20; t++) rows.push({ user: `u${t % 6}`, item: 'z', ts: 5000 + t, rating: 1 });
    const { rows: deduped } = dedupe(
      rows.map((r, i) => ({ ...r, file: 'mem', line: i + 1 })),
      'drop',
    );
    const cfg = EtlConfig.parse({ format: 'csv', split: { valid: 0.2, test: 0.2 } });
    await writeDatasetParquet(buildDataset(deduped, 0, cfg), dir);
    const c = await loadCatalogue(dir);
    expect(c.items).toEqual(['p', 'q', 'r', 'z']);
    expect(c.counts[3]).toBe(0);
    expect(c.counts[0]).toBeGreaterThan(c.counts[1]!);
    expect(c.counts[2]).toBe(1);
    expect(prepareScenario('popularity-shift', 0.5, c).longTail).toEqual(['r', 'z']);
    await fs.rm(path.join(dir, 'train.parquet'));
    await expect(loadCatalogue(dir)).rejects.toThrow(`dataset copy ${dir} has no train.parquet`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

describe('simulate() with a scenario, seen from the server', () => {
  const loader: ModelLoader = {
    resolve: (ref: ModelRef) => Promise.resolve(fakeServable(ref.name, ref.version ?? '1')),
    load: (v) => Promise.resolve(new LoadedModel(v, new FakeRanker(), fakeCatalog())),
  };
  // The fake ranks a, b, c, d, e; items of its catalogue are a..f.
  const simUsers: SimUser[] = [{ userId: 'clicker', history: ['f', 'e'], heldOut: new Set(['c']) }];
  const fakeCatalogue: Catalogue = { items: ['a', 'b', 'c', 'd', 'e', 'f'], counts: [6, 5, 4, 3, 2, 1] };

  async function run(name: ScenarioName, shift: number) {
    const pool = new ModelPool(loader);
    await pool.loadVersion({ name: 'm', version: '1' });
    const requests: RecommendRequest[] = [];
    const feedback: FeedbackRequest[] = [];
    const running = await startServer({
      slot: pool,
      port: 0,
      hooks: { onRecommend: (req) => requests.push(req), onFeedback: (e) => feedback.push(e) },
    });
    try {
      const r = await simulate({
        addresses: [running.address],
        users: simUsers,
        qps: 100,
        seconds: 0.5,
        k: 5,
        random: seeded(11),
        scenario: prepareScenario(name, shift, fakeCatalogue),
      });
      return { r, requests, feedback };
    } finally {
      await running.shutdown(1000);
    }
  }

  it('user-mix at 1: every call comes from an unknown user with at most two popular items', async () => {
    const { r, requests } = await run('user-mix', 1);
    expect(r.requests).toBeGreaterThan(30);
    expect(r.shifted).toBe(r.requests);
    expect(requests).toHaveLength(r.requests);
    for (const q of requests) {
      expect(q.user_id).toMatch(/^new-user-\d+$/);
      expect(q.history.length).toBeLessThanOrEqual(2);
    }
  });

  it('new-items at 1: every answer is followed by a click on a new item, and histories end with new ids', async () => {
    const { r, requests, feedback } = await run('new-items', 1);
    expect(r.shifted).toBe(r.requests);
    expect(feedback).toHaveLength(r.requests);
    expect(feedback.every((f) => /^new-\d+$/.test(f.item_id) && f.event === 'FEEDBACK_EVENT_CLICK')).toBe(true);
    expect(r.clicks).toBe(r.requests);
    for (const q of requests) expect(q.history.at(-1)!.item_id).toMatch(/^new-\d+$/);
  });
});
