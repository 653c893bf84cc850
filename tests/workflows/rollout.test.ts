/**
 * The rollout workflow's logic with mocked activities on the time-skipping test server: every way it rolls back
 * (timeout, rejection, abort in each phase, a failing step), that each undo runs in order even when one fails, that too
 * little canary traffic asks a human and never passes by itself, and a promotion for reference.
 */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import {
  abortUpdate,
  approveUpdate,
  rejectUpdate,
  rollout,
  rolloutStateQuery,
  type RolloutInput,
  type RolloutState,
} from '../../workflows';
import {
  blockingActivity,
  fatal,
  uniqueId,
  useWorkflowTestEnv,
  waitForQuery,
  type ActivityCall,
  type ActivityInput,
  type MockActivities,
} from './harness';
import { environmentLeaseActivities } from '../../activities/environment-lease';

const t = useWorkflowTestEnv();

const BASELINE = '1';
const CANDIDATE = '2';
const APPROVAL_TIMEOUT_S = 3600;
/** Two canary steps with one-minute bakes; too little traffic is retried every 15 s for a minute. */
const CONFIG: RolloutInput['config'] = {
  staging: { replicas: 1, loadTest: { qps: 50, seconds: 2 }, maxErrorRate: 0.01, maxP99Ms: 100 },
  production: { replicas: 2 },
  canary: {
    steps: [
      { weight: 10, bakeSeconds: 60 },
      { weight: 50, bakeSeconds: 60 },
    ],
    analysis: { retrySeconds: 15, maxWaitSeconds: 60 },
  },
  approval: { timeoutSeconds: APPROVAL_TIMEOUT_S },
};
const LOAD_OK = { requests: 100, achievedQps: 50, errorRate: 0, p50Ms: 2, p99Ms: 8, errors: 0 };

const analysis = (outcome: 'pass' | 'fail' | 'inconclusive') => ({
  result: { outcome, checks: [], summary: `mock analysis: ${outcome}`, canary: {}, baseline: {} },
});

/** Activities that let a rollout of v2 against champion v1 pass every automated check. */
function passingActivities(overrides: MockActivities = {}): MockActivities {
  return {
    describeVersion: (i) => ({ model: i.model, version: i.version, dataset: { name: 'ml', version: 'd1' } }),
    currentChampion: () => ({ version: BASELINE, modelUri: 'models:/m/1', dataset: { name: 'ml', version: 'd0' } }),
    ensureEnvironment: (i) => ({ env: i.env, replicas: [] }),
    stopEnvironment: () => ({ stopped: true }),
    runLoadTest: () => LOAD_OK,
    analyseCanaryWindow: () => analysis('pass'),
    promote: () => ({ previousChampion: BASELINE }),
    restoreChampion: () => ({ restored: true }),
    tagVersion: () => ({}),
    ...overrides,
  };
}

/** A call as one readable line: what changed where. */
function describeCall({ name, input }: ActivityCall): string {
  const weights = (w: unknown) =>
    Object.entries(w as Record<string, number>)
      .map(([v, p]) => `v${v}=${p}`)
      .join(',');
  switch (name) {
    case 'ensureEnvironment':
      return `ensureEnvironment ${String(input.env)} ${weights(input.weights)}`;
    case 'stopEnvironment':
    case 'runLoadTest':
      return `${name} ${String(input.env)}`;
    case 'promote':
      return `promote v${String(input.version)} over v${String(input.expectedChampion)}`;
    case 'restoreChampion':
      return `restoreChampion v${String(input.previousChampion)}`;
    case 'tagVersion': {
      const tag = String((input.tags as Record<string, unknown>)['recsys.rollout']);
      return `tagVersion ${/^(promoted|rolled back)/.exec(tag)?.[1] ?? tag}`;
    }
    default:
      return name;
  }
}
/** The calls that change or read the world; the lease bookkeeping (environmentPort, leaseHolder) has tests of its own. */
const describeCalls = (calls: ActivityCall[]) =>
  calls.filter((c) => c.name !== 'environmentPort' && c.name !== 'leaseHolder').map(describeCall);

/** The calls of a rollout of v2 against v1 through staging and both canary steps, all passing. */
const THROUGH_CANARY = [
  'describeVersion',
  'currentChampion',
  'ensureEnvironment staging v2=100',
  'runLoadTest staging',
  'stopEnvironment staging',
  'ensureEnvironment production v1=90,v2=10',
  'analyseCanaryWindow',
  'ensureEnvironment production v1=50,v2=50',
  'analyseCanaryWindow',
];
const RESTORE_PRODUCTION = 'ensureEnvironment production v1=100';
/** The documented id of a rollout (one per model version), as the CLI and continuousTraining use it. */
const rolloutId = (model: string) => `rollout-${model}-v${CANDIDATE}`;

async function start(mocks: MockActivities) {
  const { taskQueue, calls } = await t.worker(mocks);
  const model = uniqueId('model');
  const handle = await t.env().client.workflow.start(rollout, {
    taskQueue,
    workflowId: rolloutId(model),
    args: [{ model, version: CANDIDATE, config: CONFIG, startedBy: 'cli test' }],
  });
  return { handle, calls, model };
}

const state = (handle: WorkflowHandle) => handle.query(rolloutStateQuery);

/** Waits for the phase, letting the test server's clock jump over bakes and retries on the way. */
const reachPhase = (handle: WorkflowHandle, phase: RolloutState['phase']) =>
  waitForQuery(
    handle,
    () => state(handle),
    (s) => s.phase === phase,
    {
      what: `phase ${phase}`,
      env: t.env(),
      skipMs: 15_000,
    },
  );

/** Waits until the server no longer lists the activity as pending (a cancelled one has reported back). */
const activityGone = (handle: WorkflowHandle, activityType: string) =>
  waitForQuery(
    handle,
    () => handle.describe(),
    (d) => !d.raw.pendingActivities?.some((a) => a.activityType?.name === activityType),
    { what: `${activityType} to finish` },
  );

const events = (s: RolloutState) => s.events.map((e) => e.what);
const decision = (by: string, reason: string) => ({ args: [{ by, reason }] as [{ by: string; reason: string }] });

/** Workflow time between two events (the first event whose text starts with each prefix). */
function secondsBetween(s: RolloutState, from: string, to: string): number {
  const at = (prefix: string) => {
    const e = s.events.find((x) => x.what.startsWith(prefix));
    if (!e) throw new Error(`no event '${prefix}...' in ${JSON.stringify(events(s))}`);
    return Date.parse(e.at);
  };
  return (at(to) - at(from)) / 1000;
}

describe('rollout workflow (mocked activities, time skipping)', () => {
  test('approved after passing staging and both canary steps: promotes (reference path)', async () => {
    const { handle, calls } = await start(passingActivities());
    const waiting = await reachPhase(handle, 'awaiting-approval');
    expect(waiting.analyses.map((a) => [a.step, a.weight, a.result.outcome])).toEqual([
      [1, 10, 'pass'],
      [2, 50, 'pass'],
    ]);
    expect(waiting.weights).toEqual({ [BASELINE]: 50, [CANDIDATE]: 50 });

    const approved = await handle.executeUpdate(approveUpdate, decision('alice', 'metrics look good'));
    expect(approved.decision).toMatchObject({ verdict: 'approve', by: 'alice', reason: 'metrics look good' });

    const result = await handle.result();
    expect(result.outcome).toBe('promoted');
    expect(result.reason).toBe('approved by alice: metrics look good');
    expect(describeCalls(calls)).toEqual([
      ...THROUGH_CANARY,
      'promote v2 over v1',
      'ensureEnvironment production v2=100',
      'tagVersion promoted',
    ]);
    const final = await state(handle);
    expect(final.phase).toBe('promoted');
    expect(final.weights).toEqual({ [CANDIDATE]: 100 });
  });

  test('no decision before the approval timeout: rolls production back', async () => {
    const started = Date.now();
    const { handle, calls } = await start(passingActivities());
    const result = await handle.result();
    expect(result.outcome).toBe('rolled-back');
    expect(result.reason).toBe(`no approval within ${APPROVAL_TIMEOUT_S} s`);
    expect(describeCalls(calls)).toEqual([...THROUGH_CANARY, RESTORE_PRODUCTION, 'tagVersion rolled back']);
    const final = await state(handle);
    expect(final.phase).toBe('rolled-back');
    expect(final.weights).toEqual({ [BASELINE]: 100 });
    // The hour passed on the workflow's clock, not the test's.
    expect(secondsBetween(final, 'waiting for approval', 'rolling back')).toBeGreaterThanOrEqual(APPROVAL_TIMEOUT_S);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  test('rejected: rolls production back with who and why', async () => {
    const { handle, calls } = await start(passingActivities());
    await reachPhase(handle, 'awaiting-approval');
    const rejected = await handle.executeUpdate(rejectUpdate, decision('bob', 'CTR dip in the EU slice'));
    expect(rejected.decision).toMatchObject({ verdict: 'reject', by: 'bob' });

    const result = await handle.result();
    expect(result).toMatchObject({ outcome: 'rolled-back', reason: 'rejected by bob: CTR dip in the EU slice' });
    expect(describeCalls(calls)).toEqual([...THROUGH_CANARY, RESTORE_PRODUCTION, 'tagVersion rolled back']);
    expect(calls.some((c) => c.name === 'promote')).toBe(false);
  });

  test('abort in staging: cancels the load test, stops staging, production untouched', async () => {
    const loadTest = blockingActivity(LOAD_OK);
    const current: { handle?: WorkflowHandle } = {};
    const { handle, calls } = await start(
      passingActivities({
        runLoadTest: loadTest.mock,
        // The undo waits until the cancelled load test has reported back, as a real one would have stopped: an
        // activity that reports after its workflow closed leaks the test server's time lock (see harness.ts).
        stopEnvironment: async () => {
          if (current.handle) await activityGone(current.handle, 'runLoadTest');
          return { stopped: true };
        },
      }),
    );
    current.handle = handle;
    try {
      await loadTest.started;
      expect((await state(handle)).phase).toBe('staging');
      // Nothing to approve in staging: the update's validator refuses it, and the workflow goes on.
      await expect(handle.executeUpdate(approveUpdate, decision('alice', 'ship it'))).rejects.toThrow(
        WorkflowUpdateFailedError,
      );

      const aborted = await handle.executeUpdate(abortUpdate, decision('carol', 'wrong build'));
      expect(events(aborted)).toContain('abort requested by carol: wrong build');
      const result = await handle.result();
      expect(result).toMatchObject({ outcome: 'rolled-back', reason: 'aborted by carol: wrong build' });
      expect(loadTest.cancelled()).toBe(true);
      expect(describeCalls(calls)).toEqual([
        'describeVersion',
        'currentChampion',
        'ensureEnvironment staging v2=100',
        'runLoadTest staging',
        'stopEnvironment staging',
        'tagVersion rolled back',
      ]);
      const final = await state(handle);
      expect(final.phase).toBe('rolled-back');
      expect(events(final)).toContain('undone: stop staging');
      expect(final.weights).toEqual({});
    } finally {
      loadTest.release();
    }
  });

  test('abort in the canary: production back to the champion alone', async () => {
    const { handle, calls } = await start(passingActivities());
    // In the first step's bake: its traffic split applied, nothing analysed yet.
    await waitForQuery(
      handle,
      async () => ({ s: await state(handle), split: calls.some((c) => /v2=10/.test(describeCall(c))) }),
      ({ s, split }) => s.phase === 'canary' && s.weights[CANDIDATE] === 10 && split,
      { what: 'the first canary bake' },
    );
    await handle.executeUpdate(abortUpdate, decision('carol', 'pager went off'));
    const result = await handle.result();
    expect(result).toMatchObject({ outcome: 'rolled-back', reason: 'aborted by carol: pager went off' });
    expect(describeCalls(calls)).toEqual([...THROUGH_CANARY.slice(0, 6), RESTORE_PRODUCTION, 'tagVersion rolled back']);
    const final = await state(handle);
    expect(final.phase).toBe('rolled-back');
    expect(final.weights).toEqual({ [BASELINE]: 100 });
    expect(events(final)).toContain('undone: production traffic back to v1, v2 unloaded');
  });

  test('abort while awaiting approval: production back to the champion, nothing promoted', async () => {
    const { handle, calls } = await start(passingActivities());
    await reachPhase(handle, 'awaiting-approval');
    await handle.executeUpdate(abortUpdate, decision('carol', 'freeze for the holidays'));
    const result = await handle.result();
    expect(result).toMatchObject({ outcome: 'rolled-back', reason: 'aborted by carol: freeze for the holidays' });
    expect(describeCalls(calls)).toEqual([...THROUGH_CANARY, RESTORE_PRODUCTION, 'tagVersion rolled back']);
    expect((await state(handle)).weights).toEqual({ [BASELINE]: 100 });
  });

  test('a failing undo does not stop the others, and the events say so', async () => {
    const mocks = passingActivities({
      // Promotion moved the alias, then a replica refuses the new version: roll back...
      ensureEnvironment: (i: ActivityInput) => {
        const w = i.weights as Record<string, number>;
        if (i.env === 'production' && w[CANDIDATE] === 100)
          throw fatal('replica 127.0.0.1:50052 did not load v2', 'ReplicaUnavailable');
        return { env: i.env, replicas: [] };
      },
      // ...and moving the alias back fails too.
      restoreChampion: () => {
        throw fatal('MLflow answered 503', 'MlflowError');
      },
    });
    const { handle, calls } = await start(mocks);
    await reachPhase(handle, 'awaiting-approval');
    await handle.executeUpdate(approveUpdate, decision('alice', 'looks fine'));
    const result = await handle.result();
    expect(result).toMatchObject({
      outcome: 'rolled-back',
      reason: 'serving replica unavailable: replica 127.0.0.1:50052 did not load v2',
    });
    // Undos in reverse order of the changes: the alias first (fails), then the traffic (still runs).
    expect(describeCalls(calls)).toEqual([
      ...THROUGH_CANARY,
      'promote v2 over v1',
      'ensureEnvironment production v2=100',
      'restoreChampion v1',
      RESTORE_PRODUCTION,
      'tagVersion rolled back',
    ]);
    const undoEvents = events(await state(handle)).filter((e) => e.startsWith('undo'));
    // Production stays held until every undo has run: no other rollout can touch it half-way.
    expect(undoEvents).toEqual([
      'undo failed: champion alias back to v1: MLflow answered 503',
      'undone: production traffic back to v1, v2 unloaded',
      'undone: release production',
    ]);
  });

  describe('too little canary traffic', () => {
    /** Inconclusive (too few requests) at 10%; at 50% conclusive if `passAt50`. */
    const starvedAt10 = (passAt50: boolean) => {
      let weight = 0;
      return passingActivities({
        ensureEnvironment: (i) => {
          if (i.env === 'production') weight = (i.weights as Record<string, number>)[CANDIDATE] ?? 0;
          return { env: i.env, replicas: [] };
        },
        analyseCanaryWindow: () => analysis(weight === 50 && passAt50 ? 'pass' : 'inconclusive'),
      });
    };

    test('asks a human after the wait, never passes by itself, and rolls back without a decision', async () => {
      const { handle, calls } = await start(starvedAt10(true));
      const asking = await reachPhase(handle, 'awaiting-traffic-decision');
      // Analysed at 0, 15, 30, 45 and 60 s after the bake, all inconclusive, still at the first step.
      expect(asking.analyses.map((a) => [a.step, a.weight, a.result.outcome])).toEqual(
        Array(5).fill([1, 10, 'inconclusive']),
      );
      expect(asking.weights).toEqual({ [BASELINE]: 90, [CANDIDATE]: 10 });

      // Half the decision window later it is still asking: no step forward, nothing promoted.
      await t.env().sleep((APPROVAL_TIMEOUT_S / 2) * 1000);
      const still = await state(handle);
      expect(still.phase).toBe('awaiting-traffic-decision');
      expect(still.analyses).toHaveLength(5);

      const result = await handle.result();
      expect(result).toMatchObject({
        outcome: 'rolled-back',
        reason: 'not enough canary traffic at 10% and no decision',
      });
      const described = describeCalls(calls);
      expect(described.filter((c) => c.startsWith('ensureEnvironment production'))).toEqual([
        'ensureEnvironment production v1=90,v2=10',
        RESTORE_PRODUCTION,
      ]);
      expect(described).not.toContain('promote v2 over v1');
      expect(described.at(-1)).toBe('tagVersion rolled back');
    });

    test('going on at a human decision still needs the final approval', async () => {
      const { handle, calls } = await start(starvedAt10(true));
      await reachPhase(handle, 'awaiting-traffic-decision');
      await handle.executeUpdate(approveUpdate, decision('dave', 'low traffic night, go on'));
      const waiting = await reachPhase(handle, 'awaiting-approval');
      expect(waiting.decision).toBeUndefined();
      expect(waiting.analyses.map((a) => a.result.outcome).slice(-1)).toEqual(['pass']);
      expect(events(waiting)).toContain(
        "continuing at dave's decision despite too little traffic: low traffic night, go on",
      );

      const result = await handle.result();
      expect(result).toMatchObject({ outcome: 'rolled-back', reason: `no approval within ${APPROVAL_TIMEOUT_S} s` });
      expect(describeCalls(calls)).not.toContain('promote v2 over v1');
      expect(describeCalls(calls).slice(-2)).toEqual([RESTORE_PRODUCTION, 'tagVersion rolled back']);
    });
  });
});

describe('rollouts left unattended', () => {
  test('two rollouts at once: the second waits for each environment the first holds, naming the holder', async () => {
    // Both rollouts run on one worker, so they share its environments (one port, one lease per environment).
    const { taskQueue, calls } = await t.worker({
      ...passingActivities(),
      leaseHolder: (i) => environmentLeaseActivities().leaseHolder({ leaseId: String(i.leaseId) }),
    });
    const begin = (model: string) =>
      t.env().client.workflow.start(rollout, {
        taskQueue,
        workflowId: rolloutId(model),
        args: [{ model, version: CANDIDATE, config: CONFIG, startedBy: 'cli test' }],
      });
    const first = await begin(uniqueId('first'));
    await reachPhase(first, 'awaiting-approval');
    const second = await begin(uniqueId('second'));
    // The first holds production while it waits for approval (its canary split is live).
    const waiting = await reachPhase(second, 'waiting-for-environment');
    expect(events(waiting).at(-1)).toMatch(`waiting for production: held by ${first.workflowId}`);
    const secondCalls = () => calls.filter((c) => c.input.model === waiting.model).map(describeCall);
    expect(secondCalls()).not.toContain(`ensureEnvironment production v${BASELINE}=90,v${CANDIDATE}=10`);

    await first.executeUpdate(approveUpdate, decision('alice', 'good'));
    expect((await first.result()).outcome).toBe('promoted');
    const next = await reachPhase(second, 'awaiting-approval');
    expect(events(next)).toContainEqual(expect.stringMatching(/^production is free after \d+ s: holding it/));
    expect(secondCalls()).toContain(`ensureEnvironment production v${BASELINE}=90,v${CANDIDATE}=10`);
    await second.executeUpdate(rejectUpdate, decision('bob', 'not now'));
    expect((await second.result()).outcome).toBe('rolled-back');
  });

  test('a rollout that cannot get an environment in time fails, saying who holds it', async () => {
    const { taskQueue } = await t.worker({
      ...passingActivities(),
      leaseHolder: (i) => environmentLeaseActivities().leaseHolder({ leaseId: String(i.leaseId) }),
    });
    const begin = (model: string, config: RolloutInput['config']) =>
      t.env().client.workflow.start(rollout, {
        taskQueue,
        workflowId: rolloutId(model),
        args: [{ model, version: CANDIDATE, config, startedBy: 'cli test' }],
      });
    const holder = await begin(uniqueId('holder'), CONFIG);
    await reachPhase(holder, 'awaiting-approval');
    const late = await begin(uniqueId('late'), { ...CONFIG, environments: { retrySeconds: 10, maxWaitSeconds: 60 } });
    const err = await late.result().then(
      () => undefined,
      (e: unknown) => e as { cause?: { message?: string; type?: string } },
    );
    expect(err?.cause?.type).toBe('EnvironmentBusy');
    expect(err?.cause?.message).toMatch(
      new RegExp(
        `^production is held by ${holder.workflowId} \\(lease env-lease-production-\\d+\\) and was not free within 60 s`,
      ),
    );
    // The holder never noticed (its own approval timer may have fired meanwhile: the server skips to it).
    expect(events(await state(holder)).join('\n')).not.toMatch(late.workflowId);
    await holder.result();
  });

  test('abort while promoting is refused, and a cancellation lets the promotion finish whole', async () => {
    const promoting = blockingActivity({ previousChampion: BASELINE });
    const { handle, calls } = await start(passingActivities({ promote: promoting.mock }));
    await reachPhase(handle, 'awaiting-approval');
    await handle.executeUpdate(approveUpdate, decision('alice', 'ship it'));
    await promoting.started;
    const refused = await handle.executeUpdate(abortUpdate, decision('bob', 'wait')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(String((refused as WorkflowUpdateFailedError).cause?.message)).toMatch(
      /is promoting v2; it cannot be aborted now/,
    );
    await handle.cancel();
    promoting.release();
    const result = await handle.result();
    expect(promoting.cancelled()).toBe(false);
    expect(result.outcome).toBe('promoted');
    const after = describeCalls(calls).slice(describeCalls(calls).indexOf('promote v2 over v1'));
    expect(after).toEqual([
      'promote v2 over v1',
      `ensureEnvironment production v${CANDIDATE}=100`,
      'tagVersion promoted',
    ]);
  });

  test('a cancelled weight change finishes stopping before the rollback sets production back', async () => {
    const order: string[] = [];
    const stepping = blockingActivity({ env: 'production', replicas: [] });
    const mocks = passingActivities({
      ensureEnvironment: async (i) => {
        const w = i.weights as Record<string, number>;
        if (i.env === 'production' && w[CANDIDATE] === 10) {
          try {
            return await stepping.mock(i);
          } finally {
            // A replica call was in flight when the cancellation came: it takes a moment to return.
            await new Promise((r) => setTimeout(r, 300));
            order.push('weight change stopped');
          }
        }
        if (i.env === 'production') order.push(`production set to ${JSON.stringify(w)}`);
        return { env: i.env, replicas: [] };
      },
    });
    const { handle } = await start(mocks);
    await stepping.started;
    await handle.executeUpdate(abortUpdate, decision('carol', 'wrong version'));
    const result = await handle.result();
    expect(result.outcome).toBe('rolled-back');
    expect(stepping.cancelled()).toBe(true);
    expect(order).toEqual(['weight change stopped', `production set to {"${BASELINE}":100}`]);
  });
});
