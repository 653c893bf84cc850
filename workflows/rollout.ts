/**
 * rollout: a registered version reaches production only through this workflow (Argo Rollouts / Flagger-like).
 *
 *   staging: deploy, bounded load test, gate on error rate and p99
 *   canary:  production traffic split champion/canary by weight steps (sticky by user), bake, automated analysis
 *            against the champion (errors, p99, click-through with a test and a minimum sample). A failed analysis
 *            rolls back at once; too little traffic waits longer, then asks a human — it never passes by itself
 *   approval: a Temporal update `approve` / `reject` (who, why); no decision before the timeout rolls back
 *   promote: move the `champion` alias (recording the previous one), shift all traffic, retire the old version
 *
 * Every step that changes the world registers its undo with a saga; failure, rejection, timeout and cancellation run
 * the undos in reverse, so no rollout leaves traffic split or an alias half-moved. Promotion is one step that cannot
 * be cancelled half-way. One rollout per environment: staging and production are held through a lease (a child
 * workflow, environment-lease.ts) while used, and a rollout that finds one held waits for it. Every activity runs on
 * the control task queue, so a rollback never waits behind a training. The workflow history is the audit log.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { LoadTestResult } from '../activities/contracts';
import type { DatasetRef } from '../lib/dataset/ref';
import { TAGS } from '../lib/mlflow/tags';
import { checkModelName, ModelNameError } from '../lib/model-name';
import { parseRolloutConfig, RolloutConfigError, type RolloutConfig } from '../lib/rollout/config';
import { RecsysModel, RecsysModelVersion, RecsysStage, RecsysTrigger } from '../lib/search-attributes';
import {
  analysisOptions,
  deployOptions,
  leaseOptions,
  loadTestOptions,
  onControlQueue,
  registryOptions,
} from './activity-options';
import { EnvironmentHolds, type Environment } from './environment-holds';
import { acceptDecisions, type Decisions } from './rollout-decisions';
import {
  rolloutStateQuery,
  type RolloutInput,
  type RolloutOutcome,
  type RolloutPhase,
  type RolloutResult,
  type RolloutState,
} from './rollout-api';
import { ms, pct, showRollout } from './rollout-view';
import { failureMessage, Saga } from './saga';

/** The rollout's activities, all on the control queue of the workflow's task queue. */
function controlActivities(taskQueue: string) {
  const on = (options: Parameters<typeof onControlQueue>[0]) =>
    proxyActivities<Activities>(onControlQueue(options, taskQueue));
  const { describeVersion, currentChampion, promote, restoreChampion, tagVersion } = on(registryOptions);
  const { ensureEnvironment, stopEnvironment, environmentPort } = on(deployOptions);
  const { analyseCanaryWindow } = on(analysisOptions);
  const { runLoadTest } = on(loadTestOptions);
  const { leaseHolder } = on(leaseOptions);
  return {
    describeVersion,
    currentChampion,
    promote,
    restoreChampion,
    tagVersion,
    ensureEnvironment,
    stopEnvironment,
    environmentPort,
    analyseCanaryWindow,
    runLoadTest,
    leaseHolder,
  };
}

/** A business outcome that ends the rollout with a rollback, as opposed to a fault. */
class RollBack extends Error {
  override name = 'RollBack';
}

export async function rollout(input: RolloutInput): Promise<RolloutResult> {
  let cfg: RolloutConfig;
  try {
    checkModelName(input.model);
    cfg = parseRolloutConfig(input.config);
  } catch (err) {
    if (err instanceof RolloutConfigError) throw ApplicationFailure.nonRetryable(err.message, 'RolloutConfigError');
    if (err instanceof ModelNameError) throw ApplicationFailure.nonRetryable(err.message, 'ConfigError');
    throw err;
  }
  return new Rollout(input, cfg).run();
}

class Rollout {
  private readonly state: RolloutState;
  private readonly saga = new Saga();
  private readonly main = new CancellationScope();
  private readonly decisions: Decisions;
  private readonly workflowId = workflowInfo().workflowId;
  private readonly salt: string;
  private readonly act = controlActivities(workflowInfo().taskQueue);
  private readonly holds = new EnvironmentHolds(this.workflowId, this.act, {
    waiting: (env, holder, leaseId) => {
      this.enter('waiting-for-environment');
      this.note(`waiting for ${env}: held by ${holder ?? 'another rollout'} (lease ${leaseId})`);
    },
    free: (env, waited, leaseId) => this.note(`${env} is free after ${waited} s: holding it (${leaseId})`),
  });

  constructor(
    private readonly input: RolloutInput,
    private readonly cfg: RolloutConfig,
  ) {
    this.state = {
      model: input.model,
      version: input.version,
      phase: 'starting',
      weights: {},
      analyses: [],
      events: [],
    };
    this.salt = cfg.salt ?? this.workflowId;
    upsertSearchAttributes([
      { key: RecsysModel, value: input.model },
      { key: RecsysModelVersion, value: input.version },
      {
        key: RecsysTrigger,
        // The training that started it may have said why it ran (drift, schedule): keep that, so one search finds both.
        value:
          workflowInfo().typedSearchAttributes.get(RecsysTrigger) ??
          (input.startedBy?.startsWith('continuousTraining') ? 'training' : 'manual'),
      },
    ]);
    setHandler(rolloutStateQuery, () => this.state);
    this.decisions = acceptDecisions(
      this.state,
      (what) => this.note(what),
      () => this.main.cancel(),
    );
  }

  async run(): Promise<RolloutResult> {
    try {
      return await this.main.run(() => this.steps());
    } catch (err) {
      if (err instanceof RollBack) {
        await this.compensate(err.message);
        return this.finish('rolled-back', err.message);
      }
      if (isCancellation(err)) {
        const abort = this.decisions.abort;
        const reason = abort ? `aborted by ${abort.by}: ${abort.reason}` : 'workflow cancelled';
        await this.compensate(reason);
        if (abort) return this.finish('rolled-back', reason);
        throw err;
      }
      // A serving replica that stopped answering is a reason to roll back, not a fault of the rollout itself.
      const replicaDown = replicaUnavailable(err);
      await this.compensate(replicaDown ?? `failed: ${failureMessage(err)}`);
      if (replicaDown) return this.finish('rolled-back', replicaDown);
      throw err;
    }
  }

  private async steps(): Promise<RolloutResult> {
    const { model, version } = this.input;
    const target = await this.act.describeVersion({ model, version });
    const champion = await this.act.currentChampion({ model });
    if (champion?.version === version) return this.finish('already-champion', `v${version} is already the champion`);
    const baseline = champion?.version;
    this.state.baseline = baseline;
    this.note(
      baseline
        ? `rolling out v${version} against champion v${baseline}`
        : `rolling out v${version}: no champion yet, so no canary (nothing to compare with)`,
    );
    await this.staging(target.dataset);
    await this.hold('production');
    if (baseline) await this.canary(baseline);
    await this.approval();
    return this.promote(baseline);
  }

  /** Deploys the version alone on staging, load-tests it and gates on errors and p99; staging stops either way. */
  private async staging(dataset: DatasetRef): Promise<void> {
    const { model, version } = this.input;
    const { staging } = this.cfg;
    await this.hold('staging');
    this.enter('staging');
    this.saga.add('stop staging', () => this.act.stopEnvironment({ env: 'staging' }));
    await this.act.ensureEnvironment({
      env: 'staging',
      replicas: staging.replicas,
      model,
      versions: [version],
      weights: { [version]: 100 },
      salt: this.salt,
      // Staging is this rollout's while it holds the lease, whatever a crashed rollout left on it.
      takeOver: true,
    });
    const result = await this.act.runLoadTest({
      env: 'staging',
      model,
      dataset,
      qps: staging.loadTest.qps,
      seconds: staging.loadTest.seconds,
    });
    this.state.staging = result;
    this.note(
      `staging load test: ${result.requests} requests at ${result.achievedQps.toFixed(0)} QPS, ` +
        `errors ${pct(result.errorRate)}, p50 ${ms(result.p50Ms)}, p99 ${ms(result.p99Ms)}`,
    );
    await this.act.stopEnvironment({ env: 'staging' });
    this.saga.pop();
    await this.release('staging');
    this.saga.pop();
    const problems = stagingProblems(result, this.cfg);
    if (problems.length > 0) throw new RollBack(`staging gate failed: ${problems.join('; ')}`);
  }

  /** Production traffic to the canary step by step, each baked and analysed against the champion. */
  private async canary(baseline: string): Promise<void> {
    const { version } = this.input;
    this.saga.add(`production traffic back to v${baseline}, v${version} unloaded`, () =>
      this.setProduction([baseline, 100]),
    );
    const steps = this.cfg.canary.steps;
    for (const [i, step] of steps.entries()) {
      this.enter('canary', `canary-${step.weight}`);
      this.state.step = { index: i + 1, of: steps.length, weight: step.weight };
      await this.setProduction([baseline, 100 - step.weight], [version, step.weight]);
      this.note(`canary step ${i + 1}/${steps.length}: ${step.weight}% of production traffic to v${version}`);
      await this.analyseStep(i + 1, step.weight, step.bakeSeconds, baseline);
    }
  }

  /** Bake, then analyse the window until it is conclusive; too little traffic for too long asks a human. */
  private async analyseStep(step: number, weight: number, bakeSeconds: number, baseline: string): Promise<void> {
    const analysis = this.cfg.canary.analysis;
    // The split took effect when setProduction returned: the window starts now (workflow time, deterministic).
    const sinceMs = Date.now();
    await sleep(bakeSeconds * 1000);
    let waited = 0;
    for (;;) {
      const { result } = await this.act.analyseCanaryWindow({
        env: 'production',
        model: this.input.model,
        sinceMs,
        canary: this.input.version,
        baseline,
        config: analysis,
      });
      this.state.latestAnalysis = result;
      this.state.analyses.push({ step, weight, at: new Date().toISOString(), result });
      this.note(`analysis at ${weight}%: ${result.summary}`);
      if (result.outcome === 'pass') return;
      if (result.outcome === 'fail') throw new RollBack(`canary analysis at ${weight}% failed: ${result.summary}`);
      if (waited >= analysis.maxWaitSeconds) break;
      await sleep(analysis.retrySeconds * 1000);
      waited += analysis.retrySeconds;
    }
    // Too little traffic is never a pass: a human decides whether to go on without a conclusive analysis.
    this.enter('awaiting-traffic-decision');
    this.note(
      `not enough traffic after ${bakeSeconds + waited} s at ${weight}%: approve to continue without a conclusive ` +
        `analysis, or reject; no decision within ${this.cfg.approval.timeoutSeconds} s rolls back`,
    );
    if (!(await this.decisions.awaitVerdict(this.cfg.approval.timeoutSeconds * 1000)))
      throw new RollBack(`not enough canary traffic at ${weight}% and no decision`);
    const d = this.state.decision!;
    if (d.verdict === 'reject') throw new RollBack(`rejected by ${d.by} (not enough traffic): ${d.reason}`);
    this.note(`continuing at ${d.by}'s decision despite too little traffic: ${d.reason}`);
    this.state.decision = undefined; // the final approval is a separate decision
    this.enter('canary', `canary-${weight}`);
  }

  private async approval(): Promise<void> {
    const { model, version } = this.input;
    const timeoutSeconds = this.cfg.approval.timeoutSeconds;
    this.enter('awaiting-approval');
    this.note(
      `waiting for approval (update 'approve' or 'reject' with who and why; ` +
        `recsys rollout approve ${model} ${version} --by ... --reason ...); ` +
        `no decision within ${timeoutSeconds} s rolls back`,
    );
    if (!(await this.decisions.awaitVerdict(timeoutSeconds * 1000)))
      throw new RollBack(`no approval within ${timeoutSeconds} s`);
    const d = this.state.decision!;
    if (d.verdict === 'reject') throw new RollBack(`rejected by ${d.by}: ${d.reason}`);
  }

  /**
   * Moves `champion`, shifts all traffic, retires the old version, as one step: once approved, a cancellation waits
   * for it to finish (and `abort` is refused meanwhile), so no promotion is ever half done or half undone. Its undo is
   * registered before it starts (restoreChampion acts only if the alias points here), for a failure half-way.
   */
  private async promote(baseline: string | undefined): Promise<RolloutResult> {
    const { model, version } = this.input;
    const d = this.state.decision!;
    this.enter('promoting');
    this.saga.add(`champion alias back to ${baseline ? `v${baseline}` : 'unset'}`, () =>
      this.act.restoreChampion({ model, version, previousChampion: baseline }),
    );
    await CancellationScope.nonCancellable(async () => {
      const promoted = await this.act.promote({
        model,
        version,
        reason: `rollout ${this.workflowId} approved by ${d.by}: ${d.reason}`,
        by: d.by,
        expectedChampion: baseline ?? null,
      });
      this.note(`champion → v${version}` + (promoted.previousChampion ? ` (was v${promoted.previousChampion})` : ''));
      await this.setProduction([version, 100]);
      this.note(
        `all production traffic on v${version}` +
          (baseline ? `; v${baseline} retired (unloaded, tagged recsys.retired)` : ''),
      );
      await this.act.tagVersion({
        model,
        version,
        tags: {
          [TAGS.rollout]: `promoted ${new Date().toISOString()} by ${this.workflowId}, approved by ${d.by}: ${d.reason}`,
        },
      });
      this.saga.clear();
      await this.release('production');
    });
    return this.finish('promoted', `approved by ${d.by}: ${d.reason}`);
  }

  /** Holds an environment (waiting while another rollout does); its release is an undo, so compensation runs held. */
  private async hold(env: Environment): Promise<void> {
    await this.holds.hold(env, this.cfg.environments);
    this.saga.add(`release ${env}`, () => this.holds.release(env));
  }

  private release(env: Environment): Promise<void> {
    return this.holds.release(env);
  }

  /**
   * Production holds exactly these versions with these weights (the first is what a restarted replica starts with),
   * and the state shows it once applied.
   */
  private async setProduction(...split: [version: string, weight: number][]): Promise<void> {
    const weights = Object.fromEntries(split);
    await this.act.ensureEnvironment({
      env: 'production',
      replicas: this.cfg.production.replicas,
      model: this.input.model,
      versions: split.map(([v]) => v),
      weights,
      salt: this.salt,
    });
    this.state.weights = weights;
  }

  private async compensate(reason: string): Promise<void> {
    const { model, version } = this.input;
    this.enter('rolling-back');
    this.note(`rolling back: ${reason}`);
    await this.saga.compensate(
      ({ what, error }) => this.note(error === undefined ? `undone: ${what}` : `undo failed: ${what}: ${error}`),
      () =>
        this.act.tagVersion({
          model,
          version,
          tags: { [TAGS.rollout]: `rolled back ${new Date().toISOString()} by ${this.workflowId}: ${reason}` },
        }),
    );
  }

  private finish(outcome: RolloutOutcome, reason: string): RolloutResult {
    const s = this.state;
    s.outcome = outcome;
    s.reason = reason;
    this.enter(outcome);
    return {
      outcome,
      reason,
      model: s.model,
      version: s.version,
      baseline: s.baseline,
      decision: s.decision,
      analyses: s.analyses,
      staging: s.staging,
      events: s.events,
    };
  }

  private note(what: string): void {
    this.state.events.push({ at: new Date().toISOString(), what });
    log.info(what);
    showRollout(this.state);
  }

  private enter(phase: RolloutPhase, stage: string = phase): void {
    this.state.phase = phase;
    upsertSearchAttributes([{ key: RecsysStage, value: stage }]);
    showRollout(this.state);
  }
}

function stagingProblems(staged: LoadTestResult, cfg: RolloutConfig): string[] {
  const { maxErrorRate, maxP99Ms } = cfg.staging;
  return [
    ...(staged.errorRate > maxErrorRate ? [`error rate ${pct(staged.errorRate)} > ${pct(maxErrorRate)}`] : []),
    ...((staged.p99Ms ?? Infinity) > maxP99Ms ? [`p99 ${ms(staged.p99Ms)} > ${maxP99Ms} ms`] : []),
    ...(staged.requests === 0 ? ['the load test sent no request'] : []),
  ];
}

function replicaUnavailable(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : undefined;
  if (cause instanceof ApplicationFailure && cause.type === 'ReplicaUnavailable')
    return `serving replica unavailable: ${cause.message}`;
  return undefined;
}
