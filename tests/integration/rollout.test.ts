/**
 * The rollout workflow against the real stack: real serving replicas (processes) for staging and production, real
 * simulated traffic and feedback, real MLflow aliases. Tests run in order: the first promotes a candidate, the others
 * roll candidates back in every way the issue names and check that production and the registry are as before.
 */
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { localDataset } from '../../lib/dataset/cache';
import { createActivities } from '../../activities';
import type { FaultInput } from '../../activities/contracts';
import { replicaSlots } from '../../fleet/environments';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import type { RolloutConfigInput } from '../../lib/rollout/config';
import { simulate, type SimulationResult } from '../../fleet/simulate/run';
import { expandPopulation, loadWorkload, type SimUser } from '../../fleet/simulate/workload';
import { createTrainingWorker, type RecsysWorker } from '../../worker/create-worker';
import {
  abortUpdate,
  approveUpdate,
  rejectUpdate,
  rolloutStateQuery,
  rolloutWorkflowId,
  type RolloutPhase,
  type RolloutState,
} from '../../workflows/rollout-api';
import { rollout } from '../../workflows/rollout';
import { uniqueName, useTemporal } from './stack';
import { LEARNABLE_SHAPE, LEARNING_CONFIG, trainTinyModel, waitFor } from './training-fixture';
import { usePrivateServingPorts } from './serving-ports';

const { environmentState, ensureEnvironment, setFault, stopEnvironment, promote } = createActivities();

usePrivateServingPorts('rollout');

// Declared before useTemporal's hooks so that it runs first: the worker must stop before its connection closes.
afterAll(async () => {
  worker?.shutdown();
  await running;
  await act(stopEnvironment, { env: 'production' });
  await act(stopEnvironment, { env: 'staging' });
});

const temporal = useTemporal();
const mlflow = new MlflowClient();

/** Short bakes and small samples; latency limits loose enough for a 2-core machine running everything at once. */
const FAST: RolloutConfigInput = {
  staging: { replicas: 1, loadTest: { qps: 50, seconds: 2 }, maxErrorRate: 0.01, maxP99Ms: 1000 },
  production: { replicas: 2 },
  canary: {
    steps: [
      // Long enough for ~300 canary answers at 20%: with ~140 (6 s at 120 QPS), a good candidate failed one CI run
      // (a 22% drop, p < 0.01, from the same model: the sample, not the model).
      { weight: 20, bakeSeconds: 8 },
      { weight: 50, bakeSeconds: 8 },
    ],
    analysis: {
      minRequests: 40,
      minFeedback: 40,
      minClicks: 5,
      // The ~100 held-out users are replayed as 2,000 pseudonymous ones (see `traffic`), so both sides see the same
      // mix of users; a 20% drop is still far from what random recommendations do (~45-60%).
      minCtrDrop: 0.2,
      maxP99Ratio: 3,
      p99SlackMs: 30,
      maxP99Ms: 1000,
      retrySeconds: 3,
      maxWaitSeconds: 9,
    },
  },
  approval: { timeoutSeconds: 300 },
};
const ONE_STEP: RolloutConfigInput = { ...FAST, canary: { ...FAST.canary, steps: [{ weight: 20, bakeSeconds: 8 }] } };

let model: string;
let users: SimUser[];
let champion: string;
let taskQueue: string;
let worker: RecsysWorker;
let running: Promise<void>;
let registered: { runId: string; artifact: string; tags: Record<string, string> };

const act = <A, R>(fn: (a: A) => Promise<R>, arg: A): Promise<R> =>
  new MockActivityEnvironment().run<[A], R, typeof fn>(fn, arg);

/** Another registry version of the same trained model: a candidate that behaves exactly like the champion. */
async function candidate(): Promise<string> {
  const mv = await mlflow.createModelVersion(model, registered.artifact, registered.runId, registered.tags);
  return mv.version;
}

const liveTraffic = new Set<AbortController>();
// A test that fails half-way must not leave its traffic running into the next one.
afterEach(() => {
  for (const a of liveTraffic) a.abort();
  liveTraffic.clear();
});

/** Production traffic for the duration of a test (bounded; aborted when the test is done). */
function traffic(seconds = 120): { stop: () => Promise<SimulationResult>; done: Promise<SimulationResult> } {
  const abort = new AbortController();
  liveTraffic.add(abort);
  const done = simulate({
    addresses: replicaSlots('production')
      .slice(0, 2)
      .map((r) => r.address),
    // Sticky assignment hashes user ids: with ~100 real users, which ones land on the canary would decide its CTR.
    users: expandPopulation(users, 2000),
    qps: 200,
    seconds,
    concurrency: 32,
    timeoutMs: 2000,
    signal: abort.signal,
  });
  return {
    stop: async () => {
      abort.abort();
      return done;
    },
    done,
  };
}

function start(version: string, config: RolloutConfigInput) {
  return temporal.client.workflow.start(rollout, {
    taskQueue,
    workflowId: rolloutWorkflowId(model, version),
    args: [{ model, version, config, startedBy: 'jest' }],
  });
}

async function until(handle: { query: (q: typeof rolloutStateQuery) => Promise<RolloutState> }, phase: RolloutPhase) {
  return waitFor(`phase ${phase}`, async () => {
    const s = await handle.query(rolloutStateQuery);
    if (s.outcome && s.phase !== phase) throw new Error(`rollout ended before ${phase}: ${s.outcome} ${s.reason}`);
    return s.phase === phase ? s : undefined;
  });
}

/** The canary step in force: production replicas hold the candidate with this weight. */
function untilCanaryAt(handle: { query: (q: typeof rolloutStateQuery) => Promise<RolloutState> }, version: string) {
  return waitFor(`canary weight on v${version}`, async () => {
    const s = await handle.query(rolloutStateQuery);
    if (s.outcome) throw new Error(`rollout ended before its canary: ${s.outcome} ${s.reason}`);
    return s.phase === 'canary' && s.weights[version] ? s : undefined;
  });
}

/** The message of a refused update (the validator's error is the cause of WorkflowUpdateFailedError). */
async function refusal(update: Promise<unknown>): Promise<string> {
  const err = await update.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  return (err as WorkflowUpdateFailedError).cause?.message ?? '';
}

/** Production as the champion left it: every replica up, holding only the champion, with all the traffic. */
async function expectProductionOn(version: string): Promise<void> {
  const state = await act(environmentState, { env: 'production' });
  expect(state.replicas).toHaveLength(2);
  for (const r of state.replicas) {
    expect(r.up).toBe(true);
    expect(r.weights).toEqual({ [version]: 100 });
    expect(r.versions.map((v) => v.version)).toEqual([version]);
  }
  expect((await mlflow.getVersionByAlias(model, 'champion'))?.version).toBe(version);
}

beforeAll(async () => {
  const tiny = await trainTinyModel(temporal, 'it-rollout', LEARNING_CONFIG, LEARNABLE_SHAPE);
  model = tiny.model;
  champion = tiny.trained.registered.version;
  const mv = await mlflow.getModelVersion(model, champion);
  const run = await mlflow.getRun(tiny.trained.registered.mlflowRunId);
  registered = { runId: run.info.run_id, artifact: `${run.info.artifact_uri}/model`, tags: tagsOf(mv) };
  users = await loadWorkload(await localDataset(tiny.trained.dataset.manifestUri));
  // The champion an earlier approved rollout would have left.
  await act(promote, { model, version: champion, reason: 'test setup', by: 'jest' });
  taskQueue = uniqueName('it-rollout');
  worker = await createTrainingWorker({ taskQueue, connection: temporal.native });
  running = worker.run();
}, 600_000);

test('a good candidate goes through staging and every canary step, waits for approval, and approval promotes it', async () => {
  const version = await candidate();
  const previous = champion;
  const handle = await start(version, FAST);
  // Production holds the candidate from the first canary step on; traffic from then on.
  await untilCanaryAt(handle, version);
  const load = traffic();
  const waiting = await until(handle, 'awaiting-approval');
  await load.stop();

  expect(waiting.staging?.errors).toBe(0);
  expect(waiting.staging?.requests).toBeGreaterThan(50);
  expect(waiting.analyses.map((a) => [a.weight, a.result.outcome])).toEqual([
    [20, 'pass'],
    [50, 'pass'],
  ]);
  for (const a of waiting.analyses) {
    expect(a.result.canary.requests).toBeGreaterThanOrEqual(40);
    expect(a.result.baseline.clicks).toBeGreaterThanOrEqual(5);
  }
  expect(waiting.weights).toEqual({ [previous]: 50, [version]: 50 });
  expect(waiting.decision).toBeUndefined();

  // A decision needs who and why; an approval outside the approval phase is refused (checked in other tests).
  expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: '', reason: 'x' }] }))).toMatch(/'by'/);
  await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice', reason: 'canary looks good' }] });
  const result = await handle.result();
  expect(result).toMatchObject({
    outcome: 'promoted',
    baseline: previous,
    decision: { verdict: 'approve', by: 'alice' },
  });

  await expectProductionOn(version);
  const tags = tagsOf(await mlflow.getModelVersion(model, version));
  expect(tags['recsys.previous_champion']).toBe(previous);
  expect(tags['recsys.promoted']).toMatch(/by alice: rollout .* approved by alice: canary looks good/);
  expect(tagsOf(await mlflow.getModelVersion(model, previous))['recsys.retired']).toMatch(`replaced by v${version}`);
  expect((await act(environmentState, { env: 'staging' })).replicas).toHaveLength(0);
  champion = version;
});

describe.each<[string, FaultInput, RegExp]>([
  ['recommends at random', { randomRecommendations: true }, /click-through/],
  ['answers 300 ms late', { addedLatencyMs: 300 }, /p99-latency/],
])('a canary that %s', (_what, fault, check) => {
  test('is rolled back at the first step without asking anyone; production never gave it more than that share', async () => {
    const version = await candidate();
    const handle = await start(version, FAST);
    await untilCanaryAt(handle, version);
    await act(setFault, { env: 'production', version, fault });
    const load = traffic();
    const result = await handle.result();
    await load.stop();

    expect(result.outcome).toBe('rolled-back');
    expect(result.reason).toMatch(/^canary analysis at 20% failed: fail: /);
    expect(result.reason).toMatch(check);
    expect(result.decision).toBeUndefined(); // nobody was asked
    expect(result.analyses.map((a) => a.weight)).toEqual(result.analyses.map(() => 20));
    const last = result.analyses.at(-1)!.result;
    const share = last.canary.requests / (last.canary.requests + last.baseline.requests);
    expect(share).toBeLessThan(0.35); // 20% of users, sticky; never the 50% step
    const events = result.events.map((e) => e.what).join('\n');
    expect(events).not.toMatch(/50% of production traffic/);

    await expectProductionOn(champion);
    expect(tagsOf(await mlflow.getModelVersion(model, version))['recsys.rollout']).toMatch(/^rolled back .*: canary/);
  });
});

test('a rejection rolls back; an approval outside the approval phase is refused', async () => {
  const version = await candidate();
  const handle = await start(version, ONE_STEP);
  await untilCanaryAt(handle, version);
  expect(await refusal(handle.executeUpdate(approveUpdate, { args: [{ by: 'eve', reason: 'too early' }] }))).toMatch(
    /is in phase 'canary', not waiting for a decision; nothing to approve/,
  );
  const load = traffic();
  await until(handle, 'awaiting-approval');
  await load.stop();
  await handle.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'not this week' }] });
  const result = await handle.result();
  expect(result).toMatchObject({ outcome: 'rolled-back', reason: 'rejected by bob: not this week' });
  await expectProductionOn(champion);
});

test('two rollouts of the model at once: the second waits for production while the first holds it', async () => {
  const a = await candidate();
  const b = await candidate();
  const first = await start(a, ONE_STEP);
  await untilCanaryAt(first, a);
  const second = await start(b, ONE_STEP);
  // Staging is free again (the first is done with it); production is not.
  const waiting = await until(second, 'waiting-for-environment');
  expect(waiting.events.at(-1)?.what).toMatch(`waiting for production: held by ${first.workflowId}`);
  expect(waiting.staging?.errors).toBe(0);
  const held = await act(environmentState, { env: 'production' });
  for (const r of held.replicas) expect(r.versions.map((v) => v.version).sort()).toEqual([champion, a].sort());

  // No traffic here: the first's canary asks a human, who rejects it.
  await until(first, 'awaiting-traffic-decision');
  await first.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'first one out' }] });
  expect((await first.result()).outcome).toBe('rolled-back');
  await untilCanaryAt(second, b);
  const after = await act(environmentState, { env: 'production' });
  for (const r of after.replicas) expect(r.versions.map((v) => v.version).sort()).toEqual([champion, b].sort());
  await second.executeUpdate(abortUpdate, { args: [{ by: 'bob', reason: 'second one out' }] });
  expect((await second.result()).outcome).toBe('rolled-back');
  await expectProductionOn(champion);
});

test('no decision before the approval timeout rolls back', async () => {
  const version = await candidate();
  const handle = await start(version, { ...ONE_STEP, approval: { timeoutSeconds: 3 } });
  await untilCanaryAt(handle, version);
  const load = traffic();
  const result = await handle.result();
  await load.stop();
  expect(result).toMatchObject({ outcome: 'rolled-back', reason: 'no approval within 3 s' });
  await expectProductionOn(champion);
});

test('a canary without traffic never passes: it waits, then asks a human, and a rejection rolls back', async () => {
  const version = await candidate();
  const handle = await start(version, ONE_STEP);
  const asking = await until(handle, 'awaiting-traffic-decision');
  expect(asking.analyses.length).toBeGreaterThanOrEqual(2); // re-analysed while waiting for traffic
  expect(asking.analyses.every((a) => a.result.outcome === 'inconclusive')).toBe(true);
  expect(asking.latestAnalysis?.summary).toMatch(/^not enough traffic: canary 0 \/ baseline 0 requests/);
  await handle.executeUpdate(rejectUpdate, { args: [{ by: 'carol', reason: 'no traffic to judge by' }] });
  const result = await handle.result();
  expect(result.outcome).toBe('rolled-back');
  expect(result.events.some((e) => /awaiting-approval|approved/.test(e.what))).toBe(false);
  await expectProductionOn(champion);
});

test('a production replica killed during the canary leads to a rollback, not to a split left behind', async () => {
  const version = await candidate();
  const handle = await start(version, FAST);
  const canary = await untilCanaryAt(handle, version);
  expect(canary.weights).toEqual({ [champion]: 80, [version]: 20 });
  const load = traffic();
  const victim = (await act(environmentState, { env: 'production' })).replicas[1]!;
  process.kill(-victim.pid!, 'SIGKILL');
  const result = await handle.result();
  await load.stop();
  expect(result.outcome).toBe('rolled-back');
  expect(result.reason).toMatch(/serving replica unavailable: replica production#1/);
  // The undo restarted the lost replica on the champion: nothing split, nothing missing.
  await expectProductionOn(champion);
});

test('a canary replica killed and restarted mid-step: the analysis (PromQL over Prometheus) keeps what it served', async () => {
  const version = await candidate();
  const oneLongStep: RolloutConfigInput = {
    ...FAST,
    canary: { ...FAST.canary, steps: [{ weight: 50, bakeSeconds: 30 }] },
  };
  const handle = await start(version, oneLongStep);
  await untilCanaryAt(handle, version);
  const load = traffic(20);
  await new Promise((r) => setTimeout(r, 8_000));
  const before = (await act(environmentState, { env: 'production' })).replicas;
  const victim = before[1]!;
  process.kill(-victim.pid!, 'SIGKILL');
  // Restarted as the fleet would: same versions, weights and salt (the rollout's policy).
  await act(ensureEnvironment, {
    env: 'production',
    replicas: 2,
    model,
    versions: [champion, version],
    weights: before[0]!.weights,
    salt: before[0]!.salt,
  });
  const sent = await load.done;
  const answered = sent.requests - sent.errors;
  const s = await until(handle, 'awaiting-approval');
  const a = s.analyses[0]!.result;
  expect(a.outcome).toBe('pass');
  const counted = a.canary.requests - a.canary.errors + (a.baseline.requests - a.baseline.errors);
  // Replica 1 served about a quarter of the calls before it died: losing its counters would fall far below this.
  expect(counted).toBeGreaterThan(0.9 * answered);
  expect(counted).toBeLessThan(1.1 * answered);
  expect(a.canary.requests).toBeGreaterThan(0.35 * counted);
  expect(sent.errors).toBeGreaterThan(0); // the kill was felt by the clients
  await handle.executeUpdate(rejectUpdate, { args: [{ by: 'dave', reason: 'test over' }] });
  expect((await handle.result()).outcome).toBe('rolled-back');
  await expectProductionOn(champion);
});

test('cancelling the workflow restores the previous state', async () => {
  const version = await candidate();
  const handle = await start(version, FAST);
  await untilCanaryAt(handle, version);
  await handle.cancel();
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect((await handle.describe()).status.name).toBe('CANCELLED');
  await expectProductionOn(champion);
  expect((await act(environmentState, { env: 'staging' })).replicas).toHaveLength(0);
});
