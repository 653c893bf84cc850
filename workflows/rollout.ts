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
 * Every step that changes the world pushes its undo onto a saga; failure, rejection, timeout and cancellation run the
 * undos in reverse, so no rollout leaves traffic split or an alias half-moved. The workflow history is the audit log.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineUpdate,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type * as activities from '../activities';
import type { CanaryAnalysis, MetricsSnapshot } from '../activities/rollout-analysis';
import type { LoadTestResult } from '../activities/deploy';
import type { AnalysisResult } from '../lib/rollout/analysis';
import {
  parseRolloutConfig,
  RolloutConfigError,
  type RolloutConfig,
  type RolloutConfigInput,
} from '../lib/rollout/config';
import { TAGS } from '../lib/mlflow/tags';
import { RecsysModel, RecsysModelVersion, RecsysStage, RecsysTrigger } from '../lib/search-attributes';

export interface RolloutInput {
  model: string;
  version: string;
  config?: RolloutConfigInput;
  /** What started it: `continuousTraining <workflow id>`, `cli <user>`. */
  startedBy?: string;
}

export type RolloutPhase =
  | 'starting'
  | 'staging'
  | 'canary'
  | 'awaiting-traffic-decision'
  | 'awaiting-approval'
  | 'promoting'
  | 'promoted'
  | 'rolling-back'
  | 'rolled-back'
  | 'already-champion';

export type RolloutOutcome = 'promoted' | 'rolled-back' | 'already-champion';

export interface Decision {
  by: string;
  reason: string;
}

export interface RolloutEvent {
  at: string;
  what: string;
}

export interface RolloutState {
  model: string;
  version: string;
  baseline?: string;
  phase: RolloutPhase;
  /** 1-based canary step while in canary. */
  step?: { index: number; of: number; weight: number };
  /** Production traffic split as last applied, version → percent. */
  weights: Record<string, number>;
  staging?: LoadTestResult;
  latestAnalysis?: AnalysisResult;
  analyses: { step: number; weight: number; at: string; result: AnalysisResult }[];
  decision?: Decision & { verdict: 'approve' | 'reject'; at: string };
  outcome?: RolloutOutcome;
  reason?: string;
  events: RolloutEvent[];
}

export interface RolloutResult {
  outcome: RolloutOutcome;
  reason: string;
  model: string;
  version: string;
  baseline?: string;
  decision?: RolloutState['decision'];
  analyses: RolloutState['analyses'];
  staging?: LoadTestResult;
  events: RolloutEvent[];
}

export const rolloutStateQuery = defineQuery<RolloutState>('state');
export const approveUpdate = defineUpdate<RolloutState, [Decision]>('approve');
export const rejectUpdate = defineUpdate<RolloutState, [Decision]>('reject');
export const abortUpdate = defineUpdate<RolloutState, [Decision]>('abort');

/** The meaningful, deduplicating id of a rollout: one per model version. */
export const rolloutWorkflowId = (model: string, version: string) => `rollout-${model}-v${version}`;

const registry = proxyActivities<typeof activities>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['RegistryLineageError', 'ChampionMovedError'] },
  summary: 'MLflow registry',
});
const deploy = proxyActivities<typeof activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 3, nonRetryableErrorTypes: ['ReplicaUnavailable'] },
  summary: 'Serving deployment (admin service)',
});
const analysis = proxyActivities<typeof activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumAttempts: 3, nonRetryableErrorTypes: ['ReplicaUnavailable'] },
  summary: 'Canary analysis: scrape serving metrics, compare canary with baseline',
});
const loadTest = proxyActivities<typeof activities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { maximumAttempts: 2 },
  summary: 'Staging load test (simulated traffic)',
});

/** A business outcome that ends the rollout with a rollback, as opposed to a fault. */
class RollBack extends Error {
  override name = 'RollBack';
}

export async function rollout(input: RolloutInput): Promise<RolloutResult> {
  const info = workflowInfo();
  let cfg: RolloutConfig;
  try {
    cfg = parseRolloutConfig(input.config);
  } catch (err) {
    if (err instanceof RolloutConfigError) throw ApplicationFailure.nonRetryable(err.message, 'RolloutConfigError');
    throw err;
  }
  const state: RolloutState = {
    model: input.model,
    version: input.version,
    phase: 'starting',
    weights: {},
    analyses: [],
    events: [],
  };
  const salt = cfg.salt ?? info.workflowId;
  /**
   * Production holds exactly these versions with these weights (the first is what a restarted replica starts with),
   * and the state shows it once applied.
   */
  const setProduction = async (...split: [version: string, weight: number][]) => {
    const weights = Object.fromEntries(split);
    await deploy.ensureEnvironment({
      env: 'production',
      replicas: cfg.production.replicas,
      model: input.model,
      versions: split.map(([v]) => v),
      weights,
      salt,
    });
    state.weights = weights;
  };
  const note = (what: string) => {
    state.events.push({ at: new Date().toISOString(), what });
    log.info(what);
    show(state);
  };
  const enter = (phase: RolloutPhase, stage: string = phase) => {
    state.phase = phase;
    upsertSearchAttributes([{ key: RecsysStage, value: stage }]);
    show(state);
  };
  upsertSearchAttributes([
    { key: RecsysModel, value: input.model },
    { key: RecsysModelVersion, value: input.version },
    { key: RecsysTrigger, value: input.startedBy?.startsWith('continuousTraining') ? 'training' : 'manual' },
  ]);

  // --- human decisions ---------------------------------------------------------------------------------------
  const main = new CancellationScope();
  let abort: Decision | undefined;
  setHandler(rolloutStateQuery, () => state);
  const decide = (verdict: 'approve' | 'reject') => (d: Decision) => {
    state.decision = { ...d, verdict, at: new Date().toISOString() };
    note(`${verdict === 'approve' ? 'approved' : 'rejected'} by ${d.by}: ${d.reason}`);
    return state;
  };
  const validDecision = (d: Decision) => {
    if (!d?.by?.trim()) throw new Error("a decision needs 'by' (who decides)");
    if (!d.reason?.trim()) throw new Error("a decision needs 'reason' (why)");
  };
  const awaitingHuman = () => state.phase === 'awaiting-approval' || state.phase === 'awaiting-traffic-decision';
  for (const [update, verdict] of [
    [approveUpdate, 'approve'],
    [rejectUpdate, 'reject'],
  ] as const) {
    setHandler(update, decide(verdict), {
      validator: (d: Decision) => {
        validDecision(d);
        if (!awaitingHuman())
          throw new Error(
            `the rollout is in phase '${state.phase}', not waiting for a decision; nothing to ${verdict}`,
          );
        if (state.decision) throw new Error(`already ${state.decision.verdict}d by ${state.decision.by}`);
      },
    });
  }
  setHandler(
    abortUpdate,
    (d: Decision) => {
      abort = d;
      note(`abort requested by ${d.by}: ${d.reason}`);
      main.cancel();
      return state;
    },
    {
      validator: (d: Decision) => {
        validDecision(d);
        if (state.outcome || state.phase === 'rolling-back' || state.phase === 'promoted')
          throw new Error(`the rollout is already ${state.phase}`);
      },
    },
  );

  // --- saga ----------------------------------------------------------------------------------------------------
  const undo: { what: string; run: () => Promise<unknown> }[] = [];
  async function compensate(reason: string): Promise<void> {
    enter('rolling-back');
    note(`rolling back: ${reason}`);
    await CancellationScope.nonCancellable(async () => {
      for (const u of undo.reverse()) {
        try {
          await u.run();
          note(`undone: ${u.what}`);
        } catch (err) {
          // Keep going: the remaining undos are independent, and the failure is in the history for a human.
          note(`undo failed: ${u.what}: ${message(err)}`);
        }
      }
      undo.length = 0;
      await registry.tagVersion({
        model: input.model,
        version: input.version,
        tags: { [TAGS.rollout]: `rolled back ${new Date().toISOString()} by ${info.workflowId}: ${reason}` },
      });
    });
  }

  const finish = (outcome: RolloutOutcome, reason: string): RolloutResult => {
    state.outcome = outcome;
    state.reason = reason;
    enter(outcome === 'rolled-back' ? 'rolled-back' : outcome === 'promoted' ? 'promoted' : 'already-champion');
    return {
      outcome,
      reason,
      model: input.model,
      version: input.version,
      baseline: state.baseline,
      decision: state.decision,
      analyses: state.analyses,
      staging: state.staging,
      events: state.events,
    };
  };

  try {
    const result = await main.run(async () => {
      const target = await registry.describeVersion({ model: input.model, version: input.version });
      const champion = await registry.currentChampion({ model: input.model });
      if (champion?.version === input.version)
        return finish('already-champion', `v${input.version} is already the champion`);
      const baseline = champion?.version;
      state.baseline = baseline;
      note(
        baseline
          ? `rolling out v${input.version} against champion v${baseline}`
          : `rolling out v${input.version}: no champion yet, so no canary (nothing to compare with)`,
      );

      // --- staging ---
      enter('staging');
      undo.push({ what: 'stop staging', run: () => deploy.stopEnvironment({ env: 'staging' }) });
      await deploy.ensureEnvironment({
        env: 'staging',
        replicas: cfg.staging.replicas,
        model: input.model,
        versions: [input.version],
        weights: { [input.version]: 100 },
        salt,
      });
      const staged = await loadTest.runLoadTest({
        env: 'staging',
        model: input.model,
        dataset: target.dataset,
        qps: cfg.staging.loadTest.qps,
        seconds: cfg.staging.loadTest.seconds,
      });
      state.staging = staged;
      const stagingProblems = [
        ...(staged.errorRate > cfg.staging.maxErrorRate
          ? [`error rate ${pct(staged.errorRate)} > ${pct(cfg.staging.maxErrorRate)}`]
          : []),
        ...((staged.p99Ms ?? Infinity) > cfg.staging.maxP99Ms
          ? [`p99 ${ms(staged.p99Ms)} > ${cfg.staging.maxP99Ms} ms`]
          : []),
        ...(staged.requests === 0 ? ['the load test sent no request'] : []),
      ];
      note(
        `staging load test: ${staged.requests} requests at ${staged.achievedQps.toFixed(0)} QPS, ` +
          `errors ${pct(staged.errorRate)}, p50 ${ms(staged.p50Ms)}, p99 ${ms(staged.p99Ms)}`,
      );
      await deploy.stopEnvironment({ env: 'staging' });
      undo.pop();
      if (stagingProblems.length > 0) throw new RollBack(`staging gate failed: ${stagingProblems.join('; ')}`);

      // --- canary ---
      if (baseline) {
        undo.push({
          what: `production traffic back to v${baseline}, v${input.version} unloaded`,
          run: () => setProduction([baseline, 100]),
        });
        const steps = cfg.canary.steps;
        for (const [i, step] of steps.entries()) {
          enter('canary', `canary-${step.weight}`);
          state.step = { index: i + 1, of: steps.length, weight: step.weight };
          await setProduction([baseline, 100 - step.weight], [input.version, step.weight]);
          note(`canary step ${i + 1}/${steps.length}: ${step.weight}% of production traffic to v${input.version}`);
          await analyseStep(i + 1, step.weight, step.bakeSeconds, baseline);
        }
      }

      // --- approval ---
      enter('awaiting-approval');
      note(
        `waiting for approval (update 'approve' or 'reject' with who and why; ` +
          `recsys rollout approve ${input.model} ${input.version} --by ... --reason ...); ` +
          `no decision within ${cfg.approval.timeoutSeconds} s rolls back`,
      );
      const decided = await condition(() => state.decision !== undefined, cfg.approval.timeoutSeconds * 1000);
      if (!decided) throw new RollBack(`no approval within ${cfg.approval.timeoutSeconds} s`);
      if (state.decision!.verdict === 'reject')
        throw new RollBack(`rejected by ${state.decision!.by}: ${state.decision!.reason}`);

      // --- promote ---
      enter('promoting');
      const promoted = await registry.promote({
        model: input.model,
        version: input.version,
        reason: `rollout ${info.workflowId} approved by ${state.decision!.by}: ${state.decision!.reason}`,
        by: state.decision!.by,
        expectedChampion: baseline ?? null,
      });
      undo.push({
        what: `champion alias back to ${baseline ? `v${baseline}` : 'unset'}`,
        run: () => registry.restoreChampion({ model: input.model, version: input.version, previousChampion: baseline }),
      });
      note(`champion → v${input.version}` + (promoted.previousChampion ? ` (was v${promoted.previousChampion})` : ''));
      await setProduction([input.version, 100]);
      note(
        `all production traffic on v${input.version}` +
          (baseline ? `; v${baseline} retired (unloaded, tagged recsys.retired)` : ''),
      );
      await registry.tagVersion({
        model: input.model,
        version: input.version,
        tags: {
          [TAGS.rollout]: `promoted ${new Date().toISOString()} by ${info.workflowId}, approved by ${state.decision!.by}: ${state.decision!.reason}`,
        },
      });
      undo.length = 0;
      return finish('promoted', `approved by ${state.decision!.by}: ${state.decision!.reason}`);
    });
    return result;
  } catch (err) {
    if (err instanceof RollBack) {
      await compensate(err.message);
      return finish('rolled-back', err.message);
    }
    if (isCancellation(err)) {
      const reason = abort ? `aborted by ${abort.by}: ${abort.reason}` : 'workflow cancelled';
      await compensate(reason);
      if (abort) return finish('rolled-back', reason);
      throw err;
    }
    // A serving replica that stopped answering is a reason to roll back, not a fault of the rollout itself.
    const replicaDown = replicaUnavailable(err);
    await compensate(replicaDown ?? `failed: ${message(err)}`);
    if (replicaDown) return finish('rolled-back', replicaDown);
    throw err;
  }

  /** Bake, then analyse the window until it is conclusive; too little traffic for too long asks a human. */
  async function analyseStep(step: number, weight: number, bakeSeconds: number, baseline: string): Promise<void> {
    const before: MetricsSnapshot = await analysis.scrapeVersionMetrics({ env: 'production' });
    await sleep(bakeSeconds * 1000);
    let waited = 0;
    for (;;) {
      const { result }: CanaryAnalysis = await analysis.analyseCanaryWindow({
        env: 'production',
        before,
        canary: input.version,
        baseline,
        config: cfg.canary.analysis,
      });
      state.latestAnalysis = result;
      state.analyses.push({ step, weight, at: new Date().toISOString(), result });
      note(`analysis at ${weight}%: ${result.summary}`);
      if (result.outcome === 'pass') return;
      if (result.outcome === 'fail') throw new RollBack(`canary analysis at ${weight}% failed: ${result.summary}`);
      if (waited < cfg.canary.analysis.maxWaitSeconds) {
        await sleep(cfg.canary.analysis.retrySeconds * 1000);
        waited += cfg.canary.analysis.retrySeconds;
        continue;
      }
      // Too little traffic is never a pass: a human decides whether to go on without a conclusive analysis.
      enter('awaiting-traffic-decision');
      note(
        `not enough traffic after ${bakeSeconds + waited} s at ${weight}%: approve to continue without a conclusive ` +
          `analysis, or reject; no decision within ${cfg.approval.timeoutSeconds} s rolls back`,
      );
      const decided = await condition(() => state.decision !== undefined, cfg.approval.timeoutSeconds * 1000);
      if (!decided) throw new RollBack(`not enough canary traffic at ${weight}% and no decision`);
      const d = state.decision!;
      if (d.verdict === 'reject') throw new RollBack(`rejected by ${d.by} (not enough traffic): ${d.reason}`);
      note(`continuing at ${d.by}'s decision despite too little traffic: ${d.reason}`);
      state.decision = undefined; // the final approval is a separate decision
      enter('canary', `canary-${weight}`);
      return;
    }
  }
}

function replicaUnavailable(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : undefined;
  if (cause instanceof ApplicationFailure && cause.type === 'ReplicaUnavailable')
    return `serving replica unavailable: ${cause.message}`;
  return undefined;
}

function message(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(1)} ms`);

/** The rollout as Markdown in the workflow's current details (the Web UI's workflow page). */
function show(s: RolloutState): void {
  const weights = Object.entries(s.weights)
    .map(([v, w]) => `v${v} ${w}%`)
    .join(' / ');
  const header = [
    `**${s.phase}**${s.step && s.phase === 'canary' ? ` step ${s.step.index}/${s.step.of} (${s.step.weight}%)` : ''}` +
      ` — ${s.model} v${s.version}${s.baseline ? ` vs champion v${s.baseline}` : ''}`,
    weights ? `production: ${weights}` : '',
    s.latestAnalysis ? `latest analysis: ${s.latestAnalysis.summary}` : '',
    s.reason ? `outcome: ${s.outcome} — ${s.reason}` : '',
  ].filter(Boolean);
  const events = s.events.slice(-8).map((e) => `- ${e.at.slice(11, 19)} ${e.what}`);
  setCurrentDetails([...header, '', ...events].join('\n'));
}
