/**
 * The traffic simulator's engine: replays simulated users as Recommend calls at a target rate, open-loop (calls start
 * on a schedule whether or not earlier ones have answered, as real users do; a closed loop would hide a slow version
 * by slowing its own load), for a bounded time, with at most `concurrency` calls in flight (a call due while the cap is
 * reached is counted as dropped, not queued). After each answer it sends one Feedback naming the answer's request_id:
 * a `click` on the first returned item that is among the user's held-out items, else an `impression` of the top item.
 * A drift scenario (scenarios.ts) may change the calls: who calls, with which history, and how answers are judged.
 * Addresses are loopback only unless `allowRemote`. Stops by itself: a deadline per call, and the run ends when the
 * last call due before `seconds` has answered.
 */
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { feedback, recommend, recommenderClient } from '../../serving/client';
import type { RecommenderClient } from '../../serving/proto';
import { checkShift, feedbackFor, planCall, type Scenario } from './scenarios';
import { newTally, quantile, summarize, type VersionSummary, type VersionTally } from './stats';
import type { SimUser } from './workload';

export interface SimulationOptions {
  /** host:port of each replica; calls go round-robin. */
  addresses: string[];
  users: readonly SimUser[];
  /** Target calls per second (> 0, at most 5,000). */
  qps: number;
  /** How long to issue calls (> 0, at most 3,600). */
  seconds: number;
  /** Items asked per call (default 10). */
  k?: number;
  /** Cap on calls in flight (default 64). */
  concurrency?: number;
  /** Send an impression when no returned item is a held-out one (default true). */
  impressions?: boolean;
  /** Deadline of each call (default 5,000 ms). */
  timeoutMs?: number;
  allowRemote?: boolean;
  /** Called about once a second with the running totals. */
  onProgress?: (p: SimulationProgress) => void;
  signal?: AbortSignal;
  /** Default Math.random (which user each call is for, and the scenario's draws). */
  random?: () => number;
  /** A drift scenario with its size (scenarios.ts prepareScenario); none replays the users as they are. */
  scenario?: Scenario;
}

export interface SimulationProgress {
  elapsedSeconds: number;
  requests: number;
  errors: number;
  clicks: number;
}

export interface SimulationResult {
  /** Calls issued (answered + failed). */
  requests: number;
  /** Calls the scenario changed (0 without one). */
  shifted: number;
  errors: number;
  errorRate: number;
  /** Calls due while `concurrency` calls were in flight: not sent. */
  dropped: number;
  errorsByCode: Record<string, number>;
  feedbackSent: number;
  feedbackErrors: number;
  clicks: number;
  /** clicks / answered calls. */
  ctr: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Calls issued per second of the run. */
  achievedQps: number;
  durationSeconds: number;
  /** By the model_version of the answers (failed calls have none). */
  perVersion: Record<string, VersionSummary>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/;

export function checkSimulationOptions(o: SimulationOptions): void {
  if (o.addresses.length === 0) throw new Error('no address to send traffic to');
  for (const a of o.addresses)
    if (!o.allowRemote && !LOOPBACK.test(a))
      throw new Error(`address ${a} is not a loopback host:port (127.0.0.1:PORT); remote targets need allowRemote`);
  if (!(o.qps > 0 && o.qps <= 5000)) throw new Error(`qps must be in (0, 5000], got ${o.qps}`);
  if (!(o.seconds > 0 && o.seconds <= 3600)) throw new Error(`seconds must be in (0, 3600], got ${o.seconds}`);
  const k = o.k ?? 10;
  if (!Number.isInteger(k) || k < 1) throw new Error(`k must be a positive integer, got ${k}`);
  const c = o.concurrency ?? 64;
  if (!Number.isInteger(c) || c < 1) throw new Error(`concurrency must be a positive integer, got ${c}`);
  if (o.users.length === 0) throw new Error('no simulated users');
  if (o.scenario) checkShift('scenario shift', o.scenario.shift);
}

const statusName = (code: number | undefined): string =>
  code === undefined ? 'UNKNOWN' : ((status as unknown as Record<number, string>)[code] ?? String(code));

export async function simulate(o: SimulationOptions): Promise<SimulationResult> {
  checkSimulationOptions(o);
  const k = o.k ?? 10;
  const concurrency = o.concurrency ?? 64;
  const timeoutMs = o.timeoutMs ?? 5000;
  const random = o.random ?? Math.random;
  const impressions = o.impressions ?? true;
  const clients: RecommenderClient[] = o.addresses.map((a) => recommenderClient(a));
  const tallies = new Map<string, VersionTally>();
  const latencies: number[] = [];
  const errorsByCode: Record<string, number> = {};
  let issued = 0;
  let errors = 0;
  let dropped = 0;
  let inFlight = 0;
  let feedbackSent = 0;
  let feedbackErrors = 0;
  let clicks = 0;
  let shifted = 0;
  const pending = new Set<Promise<void>>();

  const one = async (n: number): Promise<void> => {
    const user = o.users[Math.floor(random() * o.users.length)]!;
    const call = planCall(user, o.scenario, random);
    if (call.shifted) shifted++;
    const client = clients[n % clients.length]!;
    const started = performance.now();
    let res;
    try {
      res = await recommend(
        client,
        {
          user_id: call.userId,
          history: call.history.map((item_id) => ({ item_id, timestamp_ms: 0 })),
          k,
          exclude_item_ids: [],
        },
        timeoutMs,
      );
    } catch (err) {
      errors++;
      const name = statusName((err as Partial<ServiceError>).code);
      errorsByCode[name] = (errorsByCode[name] ?? 0) + 1;
      return;
    }
    const latency = performance.now() - started;
    latencies.push(latency);
    let t = tallies.get(res.model_version);
    if (!t) tallies.set(res.model_version, (t = newTally()));
    t.requests++;
    t.latenciesMs.push(latency);
    // At most one feedback per answer: a click on the first held-out item returned (so that clicks / answers is the
    // click-through the server counts too), else an impression of the top item (scenarios.ts feedbackFor).
    const { hit, feedback: e } = feedbackFor(call, res.items, impressions);
    if (hit !== undefined) t.hits++;
    if (!e) return;
    try {
      await feedback(
        client,
        { request_id: res.request_id, user_id: call.userId, ...e, timestamp_ms: Date.now(), value: 0 },
        timeoutMs,
      );
      feedbackSent++;
      if (e.event === 'FEEDBACK_EVENT_CLICK') {
        t.clicks++;
        clicks++;
      } else t.impressions++;
    } catch {
      feedbackErrors++;
    }
  };

  const startedAt = performance.now();
  const endAt = startedAt + o.seconds * 1000;
  let lastProgress = startedAt;
  try {
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const stop = o.signal?.aborted || now >= endAt;
        const due = Math.floor(((Math.min(now, endAt) - startedAt) / 1000) * o.qps);
        while (!stop && issued + dropped < due) {
          if (inFlight >= concurrency) {
            dropped++;
            continue;
          }
          const n = issued++;
          inFlight++;
          const p = one(n).finally(() => {
            inFlight--;
            pending.delete(p);
          });
          pending.add(p);
        }
        if (o.onProgress && now - lastProgress >= 1000) {
          lastProgress = now;
          o.onProgress({ elapsedSeconds: (now - startedAt) / 1000, requests: issued, errors, clicks });
        }
        if (stop) resolve();
        else setTimeout(tick, Math.max(1, Math.min(10, 1000 / o.qps)));
      };
      tick();
    });
    const issuing = (Math.min(performance.now(), endAt) - startedAt) / 1000;
    while (pending.size > 0) await Promise.all([...pending]);
    const answered = issued - errors;
    const perVersion: Record<string, VersionSummary> = {};
    for (const [v, t] of [...tallies].sort(([a], [b]) => a.localeCompare(b))) perVersion[v] = summarize(t);
    return {
      requests: issued,
      shifted,
      errors,
      errorRate: issued > 0 ? errors / issued : 0,
      dropped,
      errorsByCode,
      feedbackSent,
      feedbackErrors,
      clicks,
      ctr: answered > 0 ? clicks / answered : 0,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      achievedQps: issuing > 0 ? issued / issuing : 0,
      durationSeconds: (performance.now() - startedAt) / 1000,
      perVersion,
    };
  } finally {
    for (const c of clients) c.close();
  }
}
