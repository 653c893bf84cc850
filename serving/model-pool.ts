/**
 * The model versions a process holds and the traffic policy over them; the only place either changes. Requests call
 * pick(userId) once and get the LoadedModel that serves them (so a policy change mid-request cannot mix versions).
 * The routing (policy plus the versions it names) is replaced with one assignment, and a version leaves the pool only
 * when no policy routes to it; it is then released after its last in-flight request. Loads run one at a time and each
 * has a deadline (`loadTimeoutMs`): a registry or object store that hangs fails that load, aborts it and lets the next
 * one run. Policy changes and unloads never wait for a load: they apply at once (a rollback must land while a canary
 * version is still downloading), and a load puts its version in only after it finished, in one synchronous step. A
 * failed load changes nothing but `lastError`.
 *
 * Two ways to use it: load(ref), the single-model behaviour (load, route all traffic to it, release the others: what
 * `recsys serve` and SIGHUP do); and loadVersion / setPolicy / unload, what the admin service does for rollouts.
 */
import { ModelLoadError, messageOf } from './errors';
import type { LoadedModel } from './loaded-model';
import type { ModelLoader } from './model-loader';
import { formatModelRef, type ModelRef } from './model-ref';
import { compareVersions, TrafficPolicy } from './traffic-policy';

export interface LoadOutcome {
  model: LoadedModel;
  /** False when the requested version was already serving all traffic (loading is idempotent). */
  swapped: boolean;
  /** `models:/name/version` of the version it replaced as the primary one. */
  previous?: string;
}

/** A request the pool refuses in its current state (e.g. unloading a version that still takes traffic). */
export class PoolConflictError extends Error {
  override readonly name = 'PoolConflictError';
}

interface Routing {
  policy: TrafficPolicy;
  /** The model of each routed version. */
  models: ReadonlyMap<string, LoadedModel>;
  primary: LoadedModel;
}

/** How long resolving and loading one version may take before it is abandoned. */
export const DEFAULT_LOAD_TIMEOUT_MS = 90_000;

export interface ModelPoolOptions {
  loadTimeoutMs?: number;
}

/**
 * One load's deadline: `run` races a step against it, and the signal tells the loader to stop. A model that a step
 * delivers after the deadline (a loader that ignored the signal) is handed to `late`, so it is released, not leaked.
 */
class LoadJob {
  readonly controller = new AbortController();
  private readonly expired: Promise<never>;
  private readonly timer: NodeJS.Timeout;

  constructor(label: string, timeoutMs: number) {
    this.expired = new Promise<never>((_, reject) => {
      this.controller.signal.addEventListener('abort', () => reject(this.controller.signal.reason as Error), {
        once: true,
      });
    });
    this.expired.catch(() => undefined); // only the steps raced against it report it
    this.timer = setTimeout(
      () =>
        this.controller.abort(
          new ModelLoadError(label, 'deadline', `not done within ${timeoutMs} ms; the versions loaded are unchanged`),
        ),
      timeoutMs,
    );
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  run<T>(step: Promise<T>, late?: (value: T) => void): Promise<T> {
    if (late)
      void step.then(
        (value) => {
          if (this.signal.aborted) late(value);
        },
        () => undefined,
      );
    return Promise.race([step, this.expired]);
  }

  end(): void {
    clearTimeout(this.timer);
  }
}

export interface PoolState {
  versions: { model: LoadedModel; weight: number }[];
  policy: TrafficPolicy | undefined;
}

export class ModelPool {
  private readonly held = new Map<string, LoadedModel>();
  private routing: Routing | undefined;
  private readonly listeners: ((active: LoadedModel | undefined) => void)[] = [];
  /** Loads, one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly jobs = new Set<LoadJob>();
  private readonly loadTimeoutMs: number;
  lastError: { at: Date; model: string; message: string } | undefined;

  constructor(
    private readonly loader: ModelLoader,
    opts: ModelPoolOptions = {},
  ) {
    this.loadTimeoutMs = opts.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
  }

  /** The model that serves `userId` under the current policy, or undefined before the first successful load. */
  pick(userId: string): LoadedModel | undefined {
    const r = this.routing;
    return r && r.models.get(r.policy.pick(userId));
  }

  /** The version with the largest share of traffic (the only one, unless a rollout is splitting traffic). */
  get active(): LoadedModel | undefined {
    return this.routing?.primary;
  }

  get policy(): TrafficPolicy | undefined {
    return this.routing?.policy;
  }

  /** Called after every change of the routing (health status). */
  onChange(listener: (active: LoadedModel | undefined) => void): void {
    this.listeners.push(listener);
  }

  /** The held versions (sorted) with their share of traffic. */
  state(): PoolState {
    const policy = this.routing?.policy;
    const versions = [...this.held.keys()].sort(compareVersions).map((v) => ({
      model: this.held.get(v)!,
      weight: policy?.weightOf(v) ?? 0,
    }));
    return { versions, policy };
  }

  /**
   * Single-model behaviour: resolves `ref`, loads and checks it if not held, routes all traffic to it and releases
   * every other version. Rejects with the reason when anything fails, in which case nothing changed.
   */
  load(ref: ModelRef): Promise<LoadOutcome> {
    return this.serially(ref, async (job) => {
      const version = await job.run(this.loader.resolve(ref, job.signal));
      const held = this.held.get(version.version);
      const same = held?.version.name === version.name ? held : undefined;
      if (same && this.routing?.policy.weightOf(version.version) === 100) return { model: same, swapped: false };
      const model = same ?? (await job.run(this.loader.load(version, job.signal), (late) => void late.retire()));
      // From here on synchronous: the state read is the state changed, whatever policy changes ran during the load.
      const previous = this.routing?.primary;
      const others = [...this.held.values()].filter((m) => m !== model);
      this.held.clear();
      this.held.set(version.version, model);
      this.route(TrafficPolicy.only(version.version, this.routing?.policy.salt));
      for (const m of others) void m.retire();
      return { model, swapped: true, previous: previous?.label };
    });
  }

  /**
   * Loads and checks a version and holds it without routing traffic to it, unless nothing is routed yet (then it
   * takes all traffic, so a server started empty serves after its first load). Idempotent: a held version is returned
   * as it is. The pool serves one registered model; a version of another one is refused.
   */
  loadVersion(ref: ModelRef): Promise<{ model: LoadedModel; alreadyLoaded: boolean }> {
    return this.serially(ref, async (job) => {
      const version = await job.run(this.loader.resolve(ref, job.signal));
      const conflict = () => {
        const name = this.routing?.primary.version.name;
        if (name !== undefined && name !== version.name)
          throw new PoolConflictError(
            `this server holds versions of ${name}; unload them (or restart) to serve ${version.name}`,
          );
      };
      conflict();
      const held = this.held.get(version.version);
      if (held) return { model: held, alreadyLoaded: true };
      const model = await job.run(this.loader.load(version, job.signal), (late) => void late.retire());
      try {
        conflict(); // again: the routing may have changed while it loaded
      } catch (err) {
        void model.retire();
        throw err;
      }
      this.held.set(version.version, model);
      if (!this.routing) this.route(TrafficPolicy.only(version.version));
      return { model, alreadyLoaded: false };
    });
  }

  /**
   * Replaces the policy (PolicyError if it names versions not held, or bad weights). Returns it as applied. Applies at
   * once, also while a load is running: a version being loaded is not held yet, so it cannot be named.
   */
  setPolicy(weights: Readonly<Record<string, number>>, salt?: string): Promise<TrafficPolicy> {
    return now(() => {
      const policy = TrafficPolicy.of(weights, this.held.keys(), salt ?? this.routing?.policy.salt);
      this.route(policy);
      return policy;
    });
  }

  /**
   * Takes a version out of the pool; it is freed after its last in-flight request. Refused while the policy routes to
   * it. Returns false if it was not held (unloading is idempotent).
   */
  unload(version: string): Promise<boolean> {
    return now(() => {
      const model = this.held.get(version);
      if (!model) return false;
      const weight = this.routing?.policy.weightOf(version) ?? 0;
      if (weight > 0)
        throw new PoolConflictError(
          `version ${version} still takes ${weight}% of traffic; set a traffic policy without it first`,
        );
      this.held.delete(version);
      void model.retire();
      return true;
    });
  }

  /** Abandons the loads in progress, takes every version out of service and frees them once their requests are done. */
  async close(): Promise<void> {
    for (const job of this.jobs) job.controller.abort(new Error('the model pool is closing'));
    await this.queue;
    const all = [...this.held.values()];
    this.held.clear();
    this.routing = undefined;
    for (const l of this.listeners) l(undefined);
    await Promise.all(all.map((m) => m.retire()));
  }

  /** Runs a load after the previous one, under its deadline, recording why it failed. */
  private serially<T>(ref: ModelRef, body: (job: LoadJob) => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      const job = new LoadJob(formatModelRef(ref), this.loadTimeoutMs);
      this.jobs.add(job);
      try {
        const out = await body(job);
        this.lastError = undefined;
        return out;
      } catch (err) {
        this.lastError = { at: new Date(), model: formatModelRef(ref), message: messageOf(err) };
        throw err;
      } finally {
        job.end();
        this.jobs.delete(job);
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Puts `policy` in force; every version it names must be held. One assignment: requests see old or new. */
  private route(policy: TrafficPolicy): void {
    const models = new Map([...policy.weights.keys()].map((v) => [v, this.held.get(v)!]));
    this.routing = { policy, models, primary: models.get(policy.primary)! };
    for (const l of this.listeners) l(this.routing.primary);
  }
}

/** `body`'s result (or error) as a promise, with `body` run synchronously now. */
function now<T>(body: () => T): Promise<T> {
  // The executor runs synchronously, and what it throws becomes the rejection.
  return new Promise<T>((resolve) => resolve(body()));
}
