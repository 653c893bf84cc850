/**
 * Faults injected on purpose into one model version's Recommend calls, so that a demonstration or a test can watch a
 * canary analysis catch a slow, failing or useless version and roll it back. Only a server started with
 * `--allow-faults` accepts them (admin-service.ts). A fault wraps the version's ranker for the calls it serves, so
 * the other versions of the same process are untouched and the version's own metrics show the damage.
 *
 * Every fault expires by itself (DEFAULT_FAULT_TTL_MS unless the caller asks for another TTL, at most
 * MAX_FAULT_TTL_MS): whoever set it may be killed before clearing it, and a forgotten fault on production would keep
 * failing real users' requests.
 */
import type { Fault as FaultMessage } from '../proto/generated/recsys/v1/Fault';
import type { Ranker, TopK } from './onnx-ranker';
import { sleep } from '../lib/time';

export type { FaultMessage };

export interface Fault {
  /** Milliseconds added before ranking. */
  addedLatencyMs: number;
  /** Share of calls that fail (0..1). */
  errorRate: number;
  /** Rank at random instead of with the model. */
  randomRecommendations: boolean;
}

export const MAX_ADDED_LATENCY_MS = 60_000;
export const DEFAULT_FAULT_TTL_MS = 10 * 60_000;
export const MAX_FAULT_TTL_MS = 60 * 60_000;

/** The TTL a SetFault asks for (0: the default); a string naming the field and value when it is out of range. */
export function faultTtlOf(ttlSeconds: number | undefined): number | string {
  const s = Number(ttlSeconds ?? 0);
  if (!Number.isInteger(s) || s < 0 || s * 1000 > MAX_FAULT_TTL_MS)
    return `ttl_seconds must be an integer in [0, ${MAX_FAULT_TTL_MS / 1000}] (0: the default, ${DEFAULT_FAULT_TTL_MS / 1000}) (value: ${s})`;
  return s === 0 ? DEFAULT_FAULT_TTL_MS : s * 1000;
}

/** Thrown by a faulty ranker; the service answers INTERNAL like any failed inference. */
export class InjectedFault extends Error {
  override readonly name = 'InjectedFault';
}

export const isEmptyFault = (f: Fault): boolean =>
  f.addedLatencyMs === 0 && f.errorRate === 0 && !f.randomRecommendations;

/** Checks a fault from the wire; a string naming the field and value when it is invalid. */
export function faultOf(msg: Partial<FaultMessage> | null | undefined): Fault | string {
  const addedLatencyMs = Number(msg?.added_latency_ms ?? 0);
  const errorRate = Number(msg?.error_rate ?? 0);
  if (!Number.isInteger(addedLatencyMs) || addedLatencyMs < 0 || addedLatencyMs > MAX_ADDED_LATENCY_MS)
    return `fault.added_latency_ms must be an integer in [0, ${MAX_ADDED_LATENCY_MS}] (value: ${addedLatencyMs})`;
  if (!(errorRate >= 0 && errorRate <= 1)) return `fault.error_rate must be in [0, 1] (value: ${errorRate})`;
  return { addedLatencyMs, errorRate, randomRecommendations: Boolean(msg?.random_recommendations) };
}

export const faultMessage = (f: Fault): FaultMessage => ({
  added_latency_ms: f.addedLatencyMs,
  error_rate: f.errorRate,
  random_recommendations: f.randomRecommendations,
});

export interface FaultTableOptions {
  /** The clock (tests). */
  now?: () => number;
  /** Told once when a fault is found expired (the server logs it). */
  onExpired?: (version: string, fault: Fault) => void;
}

/**
 * The faults in force, by version, each until it expires. Setting an empty fault clears the version's. Expiry is
 * checked on every read, so an expired fault never applies to another request, with no timer to keep or stop.
 */
export class FaultTable {
  private readonly faults = new Map<string, { fault: Fault; expiresAtMs: number }>();
  private readonly now: () => number;

  constructor(private readonly opts: FaultTableOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  get(version: string): Fault | undefined {
    const entry = this.faults.get(version);
    if (!entry) return undefined;
    if (this.now() < entry.expiresAtMs) return entry.fault;
    this.faults.delete(version);
    this.opts.onExpired?.(version, entry.fault);
    return undefined;
  }

  /** Puts `fault` in force for `ttlMs` (capped at MAX_FAULT_TTL_MS), replacing the version's; empty clears it. */
  set(version: string, fault: Fault, ttlMs = DEFAULT_FAULT_TTL_MS): void {
    if (isEmptyFault(fault)) this.faults.delete(version);
    else this.faults.set(version, { fault: { ...fault }, expiresAtMs: this.now() + Math.min(ttlMs, MAX_FAULT_TTL_MS) });
  }

  /** The versions with a fault in force, sorted. */
  private live(): string[] {
    return [...this.faults.keys()].filter((v) => this.get(v) !== undefined).sort((a, b) => a.localeCompare(b));
  }

  toJSON(): Record<string, FaultMessage> {
    return Object.fromEntries(this.live().map((v) => [v, faultMessage(this.faults.get(v)!.fault)]));
  }

  /** When each fault in force expires (epoch ms), by version. */
  expiries(): Record<string, number> {
    return Object.fromEntries(this.live().map((v) => [v, this.faults.get(v)!.expiresAtMs]));
  }
}

/** Random distinct item indices in 1..nItems, as many as the ranker returns, with descending scores. */
export function randomTopK(topK: number, nItems: number, random: () => number = Math.random): TopK {
  const n = Math.min(topK, nItems);
  const picked = new Set<number>();
  while (picked.size < n) picked.add(1 + Math.floor(random() * nItems));
  const items = BigInt64Array.from([...picked].map(BigInt));
  const scores = Float32Array.from({ length: n }, (_, i) => n - i);
  return { items, scores };
}

/** `ranker` with `fault` applied to every rank() call: the delay first, then the error draw, then the ranking. */
export function faultyRanker(ranker: Ranker, fault: Fault, nItems: number, random: () => number = Math.random): Ranker {
  return {
    historyLen: ranker.historyLen,
    topK: ranker.topK,
    dispose: () => ranker.dispose(),
    async rank(indices, n, time) {
      if (fault.addedLatencyMs > 0) await sleep(fault.addedLatencyMs);
      if (fault.errorRate > 0 && random() < fault.errorRate)
        throw new InjectedFault(`injected fault: error_rate ${fault.errorRate}`);
      if (fault.randomRecommendations) return randomTopK(ranker.topK, nItems, random);
      return ranker.rank(indices, n, time);
    },
  };
}
