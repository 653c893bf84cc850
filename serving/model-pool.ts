/**
 * The model versions a process holds and the traffic policy over them; the only place either changes. Requests call
 * pick(userId) once and get the LoadedModel that serves them (so a policy change mid-request cannot mix versions).
 * The routing (policy plus the versions it names) is replaced with one assignment, and a version leaves the pool only
 * when no policy routes to it; it is then released after its last in-flight request. Loads, unloads and policy
 * changes run one at a time, so they never race, and a failed load changes nothing but `lastError`.
 *
 * Two ways to use it: load(ref), the single-model behaviour (load, route all traffic to it, release the others: what
 * `recsys serve` and SIGHUP do); and loadVersion / setPolicy / unload, what the admin service does for rollouts.
 */
import { messageOf } from './errors';
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

export interface PoolState {
  versions: { model: LoadedModel; weight: number }[];
  policy: TrafficPolicy | undefined;
}

export class ModelPool {
  private readonly held = new Map<string, LoadedModel>();
  private routing: Routing | undefined;
  private readonly listeners: ((active: LoadedModel | undefined) => void)[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  lastError: { at: Date; model: string; message: string } | undefined;

  constructor(private readonly loader: ModelLoader) {}

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
    return this.serially(ref, async () => {
      const version = await this.loader.resolve(ref);
      const previous = this.routing?.primary;
      const sole = this.routing?.policy.weightOf(version.version) === 100;
      const held = this.held.get(version.version);
      if (held && held.version.name === version.name && sole) return { model: held, swapped: false };
      const model = held?.version.name === version.name ? held : await this.loader.load(version);
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
    return this.serially(ref, async () => {
      const version = await this.loader.resolve(ref);
      const name = this.routing?.primary.version.name;
      if (name !== undefined && name !== version.name)
        throw new PoolConflictError(
          `this server holds versions of ${name}; unload them (or restart) to serve ${version.name}`,
        );
      const held = this.held.get(version.version);
      if (held) return { model: held, alreadyLoaded: true };
      const model = await this.loader.load(version);
      this.held.set(version.version, model);
      if (!this.routing) this.route(TrafficPolicy.only(version.version));
      return { model, alreadyLoaded: false };
    });
  }

  /** Replaces the policy (PolicyError if it names versions not held, or bad weights). Returns it as applied. */
  setPolicy(weights: Readonly<Record<string, number>>, salt?: string): Promise<TrafficPolicy> {
    const run = this.queue.then(() => {
      const policy = TrafficPolicy.of(weights, this.held.keys(), salt ?? this.routing?.policy.salt);
      this.route(policy);
      return policy;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Takes a version out of the pool; it is freed after its last in-flight request. Refused while the policy routes to
   * it. Returns false if it was not held (unloading is idempotent).
   */
  unload(version: string): Promise<boolean> {
    const run = this.queue.then(() => {
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
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Takes every version out of service and frees them once their requests are done. */
  async close(): Promise<void> {
    await this.queue;
    const all = [...this.held.values()];
    this.held.clear();
    this.routing = undefined;
    for (const l of this.listeners) l(undefined);
    await Promise.all(all.map((m) => m.retire()));
  }

  /** Runs a load after the previous change, recording why it failed. */
  private serially<T>(ref: ModelRef, body: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      try {
        const out = await body();
        this.lastError = undefined;
        return out;
      } catch (err) {
        this.lastError = { at: new Date(), model: formatModelRef(ref), message: messageOf(err) };
        throw err;
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
