/**
 * Drift scenarios for the traffic simulator: ways the served traffic changes that drift monitors must notice, each
 * with a size `shift` s in (0, 1]. They change what is really sent and judged, not labels on it:
 *
 * - `popularity-shift`: a share s of calls carry a history drawn from the long tail (items uniformly at random from
 *   the catalogue's less popular half by training interactions) instead of the user's own, of the same length, so
 *   the popularity of what is requested moves, and with it that of what the model recommends.
 * - `new-items`: a surge of items the catalogue does not have (`new-<n>`, a pool of NEW_ITEM_POOL): a share s of
 *   answers get their feedback as a click on a new item, and those calls' histories end with 1 to 3 new ids (the
 *   oldest items make room, so the length stays when the history is long enough).
 * - `user-mix`: a share s of calls come from users the dataset does not know (`new-user-<n>`, a pool of
 *   NEW_USER_POOL) with short histories: 0 to 2 items drawn by training popularity. Their clicks are judged against
 *   the held-out items of the real user drawn for the call (a newcomer with that user's tastes).
 * - `degrade`: users' tastes move away from what the model learnt: for a share s of users (chosen by a hash of the
 *   user id, so the same users every call and every run) the held-out items a click is judged against are replaced
 *   by as many random catalogue items, so click-through drops by about s.
 *
 * planCall decides one call and feedbackFor its feedback: pure functions of the user, the scenario and `random`, so a
 * seeded random makes a run's calls reproducible and the unit tests need no server. Without a scenario planCall
 * returns the user's own call and draws nothing from `random`: the simulator behaves exactly as before.
 */
import type { SimUser } from './workload';

export const SCENARIOS = ['popularity-shift', 'new-items', 'user-mix', 'degrade'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/** The size of a scenario when --shift is not given. */
export const DEFAULT_SHIFT = 0.5;
/** New items (`new-0` .. `new-199`) that `new-items` draws from: a release wave, not one new id per click. */
export const NEW_ITEM_POOL = 200;
/** Unknown users (`new-user-0` ..) that `user-mix` draws from: enough that sticky assignment spreads them. */
export const NEW_USER_POOL = 1000;
/** How many new ids a `new-items` history ends with: 1 to this many. */
const MAX_NEW_IN_HISTORY = 3;
/** How many (popular) items a `user-mix` newcomer's history has: 0 to this many. */
const MAX_NEWCOMER_HISTORY = 2;

/** The items of a dataset version by popularity: what the scenarios draw from (workload.ts' loadCatalogue). */
export interface Catalogue {
  /** Item ids, most trained-on first (ties by item index). */
  items: readonly string[];
  /** Training interactions of items[i]. */
  counts: readonly number[];
}

/** A scenario with what its draws need, computed once per run. */
export interface Scenario {
  name: ScenarioName;
  shift: number;
  /** Every catalogue item (degrade's random held-out items). */
  all: readonly string[];
  /** The less popular half by training interactions (popularity-shift). */
  longTail: readonly string[];
  /** cumulative[i]: training interactions of all[0..i] (user-mix's popularity draws). */
  cumulative: Float64Array;
  /** `new-0` .. : ids the catalogue does not have (new-items). */
  newItems: readonly string[];
}

/** One call as the simulator sends it, and how its answer is judged. */
export interface PlannedCall {
  userId: string;
  /** Item ids, oldest first. */
  history: readonly string[];
  /** A click goes to the first returned item among these. */
  heldOut: ReadonlySet<string>;
  /** When set, the answer's feedback is a click on this item whatever was returned (new-items). */
  clickItem?: string;
  /** The scenario changed this call. */
  shifted: boolean;
}

export type SimFeedbackEvent = 'FEEDBACK_EVENT_CLICK' | 'FEEDBACK_EVENT_IMPRESSION';

export function parseScenarioName(flag: string, value: string): ScenarioName {
  if ((SCENARIOS as readonly string[]).includes(value)) return value as ScenarioName;
  throw new Error(`${flag} must be one of ${SCENARIOS.join(', ')}, got ${JSON.stringify(value)}`);
}

export function checkShift(flag: string, shift: number): number {
  if (!(Number.isFinite(shift) && shift > 0 && shift <= 1))
    throw new Error(`${flag} must be a number in (0, 1], got ${shift}`);
  return shift;
}

export function prepareScenario(name: ScenarioName, shift: number, catalogue: Catalogue): Scenario {
  parseScenarioName('scenario', name);
  checkShift('shift', shift);
  const all = catalogue.items;
  if (all.length === 0) throw new Error('scenario: the catalogue has no items');
  if (catalogue.counts.length !== all.length)
    throw new Error(`scenario: ${all.length} items but ${catalogue.counts.length} counts`);
  const cumulative = new Float64Array(all.length);
  let total = 0;
  for (let i = 0; i < all.length; i++) {
    const c = catalogue.counts[i]!;
    if (!(c >= 0)) throw new Error(`scenario: item ${all[i]} has count ${c}`);
    if (i > 0 && c > catalogue.counts[i - 1]!)
      throw new Error(`scenario: the catalogue is not sorted by popularity (item ${all[i]})`);
    cumulative[i] = total += c;
  }
  const known = new Set(all);
  const newItems = Array.from({ length: NEW_ITEM_POOL }, (_, n) => `new-${n}`);
  const taken = newItems.find((id) => known.has(id));
  if (taken) throw new Error(`scenario: the catalogue already has an item ${taken}; new-items needs ids it lacks`);
  return { name, shift, all, longTail: all.slice(Math.floor(all.length / 2)), cumulative, newItems };
}

const pick = <T>(xs: readonly T[], random: () => number): T => xs[Math.floor(random() * xs.length)]!;

/** An item drawn with probability proportional to its training interactions (uniform if there are none). */
function popularItem(s: Scenario, random: () => number): string {
  const total = s.cumulative[s.cumulative.length - 1]!;
  if (total === 0) return pick(s.all, random);
  const r = random() * total;
  let lo = 0;
  let hi = s.cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (s.cumulative[mid]! > r) hi = mid;
    else lo = mid + 1;
  }
  return s.all[lo]!;
}

/** 32-bit FNV-1a of the string with a murmur3 finaliser, as a fraction in [0, 1): a user's sticky draw. */
export function userFraction(salt: string, userId: string): number {
  let h = 0x811c9dc5;
  const s = `${salt}:${userId}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/** The call the simulator sends for `user` under `scenario` (none: the user's own call, nothing drawn). */
export function planCall(user: SimUser, scenario: Scenario | undefined, random: () => number): PlannedCall {
  const own: PlannedCall = { userId: user.userId, history: user.history, heldOut: user.heldOut, shifted: false };
  if (!scenario) return own;
  const s = scenario;
  switch (s.name) {
    case 'popularity-shift': {
      if (random() >= s.shift) return own;
      const history = Array.from(user.history, () => pick(s.longTail, random));
      return { ...own, history, shifted: true };
    }
    case 'new-items': {
      if (random() >= s.shift) return own;
      const fresh = 1 + Math.floor(random() * MAX_NEW_IN_HISTORY);
      const len = user.history.length;
      const keep = Math.min(len, Math.max(1, len - fresh));
      const history = [...user.history.slice(len - keep)];
      for (let i = 0; i < fresh; i++) history.push(pick(s.newItems, random));
      return { ...own, history, clickItem: pick(s.newItems, random), shifted: true };
    }
    case 'user-mix': {
      if (random() >= s.shift) return own;
      const userId = `new-user-${Math.floor(random() * NEW_USER_POOL)}`;
      const n = Math.floor(random() * (MAX_NEWCOMER_HISTORY + 1));
      const history = Array.from({ length: n }, () => popularItem(s, random));
      return { ...own, userId, history, shifted: true };
    }
    case 'degrade': {
      if (userFraction('degrade', user.userId) >= s.shift) return own;
      const heldOut = new Set<string>();
      for (let i = 0; i < Math.max(1, user.heldOut.size); i++) heldOut.add(pick(s.all, random));
      return { ...own, heldOut, shifted: true };
    }
  }
}

/**
 * The feedback an answer gets: the call's fixed click if it has one; else a click on the first returned item among
 * the held-out ones; else (with `impressions`) an impression of the top item; else none. `hit` is the first returned
 * held-out item, whatever the feedback.
 */
export function feedbackFor(
  call: PlannedCall,
  returned: readonly { item_id: string }[],
  impressions: boolean,
): { hit: string | undefined; feedback?: { item_id: string; event: SimFeedbackEvent } } {
  const hit = returned.find((it) => call.heldOut.has(it.item_id))?.item_id;
  if (call.clickItem !== undefined)
    return { hit, feedback: { item_id: call.clickItem, event: 'FEEDBACK_EVENT_CLICK' } };
  if (hit !== undefined) return { hit, feedback: { item_id: hit, event: 'FEEDBACK_EVENT_CLICK' } };
  if (impressions && returned[0])
    return { hit, feedback: { item_id: returned[0].item_id, event: 'FEEDBACK_EVENT_IMPRESSION' } };
  return { hit };
}
