/**
 * `recsys schedule` against the stack's Temporal: create (twice: the second updates), describe, list, update,
 * pause/unpause, trigger under the schedule's own overlap policy, bounded backfill, delete. No worker polls the test's
 * task queue, so the runs a schedule starts just wait (the lead tests `scheduledRetrain` itself); they are terminated
 * at the end. The CLI's functions run in-process; two checks spawn the CLI to see its wiring and exit code.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { TypedSearchAttributes } from '@temporalio/common';
import { config } from '../../lib/config';
import { RecsysModel, RecsysTrigger } from '../../lib/search-attributes';
import { temporalConnectionOptions } from '../../lib/temporal-connection';
import {
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  pauseSchedule,
  triggerSchedule,
  updateSchedule,
  type ScheduleReport,
  type ScheduleRow,
} from '../../cli/commands/schedule';
import { validateCron } from '../../cli/schedule-spec';
import { uniqueName } from './stack';

const ROOT = path.resolve(__dirname, '..', '..');
const model = uniqueName('sched-cli');
const scheduleId = `retrain-schedule-${model}`;
// Nobody polls this queue: started runs stay unprocessed instead of reaching a real worker.
const taskQueue = uniqueName('sched-cli-q');
const opts = { taskQueue, who: 'schedule-cli-test' };
const HALF_HOUR = 30 * 60_000;

let connection: Connection;
let client: Client;

beforeAll(async () => {
  connection = await Connection.connect(temporalConnectionOptions());
  client = new Client({ connection, namespace: config().temporalNamespace });
});

afterAll(async () => {
  await client.schedule
    .getHandle(scheduleId)
    .delete()
    .catch(() => undefined);
  // Everything the schedule started (by the server's own search attribute), whatever the test got to.
  const query = `TemporalScheduledById = '${scheduleId}' AND ExecutionStatus = 'Running'`;
  for await (const wf of client.workflow.list({ query }))
    await client.workflow
      .getHandle(wf.workflowId, wf.runId)
      .terminate('schedule-cli test cleanup')
      .catch(() => undefined);
  await connection.close();
});

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RECSYS_TASK_QUEUE: taskQueue },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d+Z$/, 'Z');

test('create makes the schedule; create again updates it instead of adding a second one', async () => {
  const first = await createSchedule(client, model, { every: '1h', offset: '5m', note: 'first' }, opts);
  expect(first.outcome).toBe('created');
  expect(first.description.spec.intervals).toEqual([{ every: 3_600_000, offset: 300_000 }]);
  expect(first.description.state.note).toBe('first');

  const second = await createSchedule(client, model, { every: '30m', overrides: '{"topK": 20}' }, opts);
  expect(second.outcome).toBe('updated');
  const d = second.description;
  expect(d.spec.intervals).toEqual([{ every: HALF_HOUR, offset: 0 }]);
  expect(d.policies).toEqual({ overlap: 'SKIP', catchupWindow: 3_600_000, pauseOnFailure: true });
  expect(d.action).toMatchObject({
    workflowType: 'scheduledRetrain',
    workflowId: `scheduled-retrain-${model}`,
    taskQueue,
    args: [{ model, overrides: { topK: 20 } }],
  });
  const attrs = d.action.typedSearchAttributes as TypedSearchAttributes;
  expect(attrs.get(RecsysModel)).toBe(model);
  expect(attrs.get(RecsysTrigger)).toBe('schedule');
  expect(d.memo).toEqual({ kind: 'recsys-retrain-schedule', model, createdBy: 'schedule-cli-test' });
  expect(d.state).toMatchObject({ paused: false, note: 'updated by schedule-cli-test with recsys schedule create' });

  // Listing is eventually consistent: wait for the update to show, then count.
  const rows = await eventually('the schedule in list', async () => {
    const all = await listSchedules(client);
    const ours = all.filter((r) => r.scheduleId === scheduleId);
    return ours.length > 0 && ours[0]!.spec === 'every 30m' ? ours : undefined;
  });
  expect(rows).toEqual([
    expect.objectContaining<Partial<ScheduleRow>>({ scheduleId, model, spec: 'every 30m', paused: false }),
  ]);
  expect(Date.parse(rows[0]!.nextRun!) % HALF_HOUR).toBe(0);
});

test('describe shows the spec, the policies and the next five times', async () => {
  const before = Date.now();
  const r = await describeSchedule(client, model);
  expect(r).toMatchObject<Partial<ScheduleReport>>({
    scheduleId,
    model,
    spec: 'every 30m',
    overlap: 'skip',
    catchupWindow: '1h',
    pauseOnFailure: true,
    paused: false,
    overrides: { topK: 20 },
    taskQueue,
    actionsTaken: 0,
  });
  expect(r.webUi).toBe(`${config().temporalUiUrl}/namespaces/${config().temporalNamespace}/schedules/${scheduleId}`);
  const next = r.nextActionTimes.map(Date.parse);
  expect(next).toHaveLength(5);
  expect(next[0]).toBeGreaterThan(before - 1000);
  expect(next[0]! - before).toBeLessThanOrEqual(HALF_HOUR);
  next.forEach((t, i) => {
    expect(t % HALF_HOUR).toBe(0);
    if (i > 0) expect(t - next[i - 1]!).toBe(HALF_HOUR);
  });

  // The same through the command line.
  const cli = await runCli(['schedule', 'describe', model, '--json']);
  expect(cli.stderr).toBe('');
  expect(cli.code).toBe(0);
  expect(JSON.parse(cli.stdout)).toMatchObject({ scheduleId, spec: 'every 30m', nextActionTimes: r.nextActionTimes });
});

test('update changes only what it is given', async () => {
  const d = await updateSchedule(client, model, { jitter: '1m', overlap: 'buffer-one' }, opts);
  expect(d.spec.intervals).toEqual([{ every: HALF_HOUR, offset: 0 }]);
  expect(d.spec.jitter).toBe(60_000);
  expect(d.policies).toEqual({ overlap: 'BUFFER_ONE', catchupWindow: 3_600_000, pauseOnFailure: true });
  expect(d.action.args).toEqual([{ model, overrides: { topK: 20 } }]);

  const back = await updateSchedule(client, model, { jitter: '0s', overlap: 'skip' }, opts);
  expect(back.policies.overlap).toBe('SKIP');
  expect(back.spec.jitter ?? 0).toBe(0);
});

test('pause and unpause change the state and the note', async () => {
  const paused = await pauseSchedule(client, model, true, 'maintenance window', opts);
  expect(paused.state).toMatchObject({ paused: true, note: 'maintenance window' });
  expect((await describeSchedule(client, model)).paused).toBe(true);
  const active = await pauseSchedule(client, model, false, undefined, opts);
  expect(active.state).toMatchObject({
    paused: false,
    note: 'unpaused by schedule-cli-test with recsys schedule unpause',
  });
});

let firstRun = '';

test("trigger runs under the schedule's own overlap policy (SKIP), not the SDK's ALLOW_ALL", async () => {
  const t1 = await triggerSchedule(client, model);
  expect(t1).toMatchObject({ outcome: 'started', overlap: 'SKIP' });
  firstRun = t1.started!.workflowId;
  expect(firstRun).toMatch(new RegExp(`^scheduled-retrain-${model}-\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`));
  const wf = await client.workflow.getHandle(firstRun).describe();
  expect(wf.type).toBe('scheduledRetrain');
  expect(wf.taskQueue).toBe(taskQueue);
  expect(wf.status.name).toBe('RUNNING');
  expect(wf.typedSearchAttributes.get(RecsysModel)).toBe(model);
  expect(wf.typedSearchAttributes.get(RecsysTrigger)).toBe('schedule');

  // The first run never ends (no worker): under SKIP a second trigger starts nothing.
  const t2 = await triggerSchedule(client, model);
  expect(t2).toMatchObject({ outcome: 'skipped', overlap: 'SKIP' });
  expect(t2.running.map((w) => w.workflowId)).toContain(firstRun);
  const r = await describeSchedule(client, model);
  expect(r).toMatchObject({ actionsTaken: 1, skippedOverlap: 1 });
  expect(r.recentActions.map((a) => a.workflowId)).toEqual([firstRun]);
  expect(r.running.map((w) => w.workflowId)).toEqual([firstRun]);

  // An explicit overlap policy overrides the schedule's (ids carry the second: let one pass).
  await new Promise((res) => setTimeout(res, 1100));
  const t3 = await triggerSchedule(client, model, { overlap: 'ALLOW_ALL' });
  expect(t3).toMatchObject({ outcome: 'started', overlap: 'ALLOW_ALL' });
  expect(t3.started!.workflowId).not.toBe(firstRun);
});

test('backfill refuses more than 100 times, naming the range; a small one takes its times now', async () => {
  const now = new Date();
  const from = new Date(now.getTime() - 3 * 86_400_000);
  await expect(backfillSchedule(client, model, { from: from.toISOString(), to: now.toISOString() })).rejects.toThrow(
    new RegExp(
      `^backfill --from ${from.toISOString()} --to ${now.toISOString()} covers 14[45] scheduled times; at most 100`,
    ),
  );
  const before = await describeSchedule(client, model);

  // The last three half hours, start inclusive (as the server backfills), under an explicit ALLOW_ALL.
  const top = Math.floor(now.getTime() / HALF_HOUR) * HALF_HOUR;
  const start = new Date(top - 3 * HALF_HOUR);
  const end = new Date(top - 60_000);
  const r = await backfillSchedule(client, model, {
    from: start.toISOString(),
    to: end.toISOString(),
    overlap: 'ALLOW_ALL',
  });
  const expected = [3, 2, 1].map((k) => new Date(top - k * HALF_HOUR));
  expect(r.times).toEqual(expected.map((t) => t.toISOString()));
  const ids = expected.map((t) => `scheduled-retrain-${model}-${rfc3339(t)}`);
  const after = await eventually('the backfilled runs', async () => {
    const d = await describeSchedule(client, model);
    return d.actionsTaken === before.actionsTaken + 3 ? d : undefined;
  });
  expect(after.recentActions.map((a) => a.workflowId)).toEqual(expect.arrayContaining(ids));
  for (const id of ids) expect((await client.workflow.getHandle(id).describe()).status.name).toBe('RUNNING');
});

test('errors name the flag and value, or the missing schedule and how to create it', async () => {
  const ghost = uniqueName('no-such-model');
  const missing = `no schedule retrain-schedule-${ghost}; create it with recsys schedule create ${ghost} --every`;
  await expect(describeSchedule(client, ghost)).rejects.toThrow(missing);
  await expect(pauseSchedule(client, ghost, true)).rejects.toThrow(missing);
  await expect(triggerSchedule(client, ghost)).rejects.toThrow(missing);
  await expect(updateSchedule(client, ghost, { every: '1h' })).rejects.toThrow(missing);
  await expect(deleteSchedule(client, ghost)).rejects.toThrow(missing);
  await expect(
    backfillSchedule(client, ghost, { from: '2025-01-01T00:00:00Z', to: '2025-01-02T00:00:00Z' }),
  ).rejects.toThrow(missing);

  const cli = await runCli(['schedule', 'create', ghost, '--every', '6h', '--cron', '0 3 * * *']);
  expect(cli.code).toBe(1);
  expect(cli.stderr).toContain(
    'recsys: --every "6h" and --cron "0 3 * * *": give only one of --every, --cron, --calendar',
  );
});

test('the local cron check agrees with the server on what it refuses', async () => {
  const exprs = [
    '0 3 * * *',
    '*/15 9-17 * * MON-FRI',
    '0 0 1 jan,jul *',
    '0 30 4 * * * 2030',
    '@every 6h/30m',
    'CRON_TZ=Europe/Paris 0 3 * * *',
    '0 25 * * *',
    '0 3 * *',
    '*/0 * * * *',
    '0 3 * * MON-',
    '0 0 31-1 * *',
    '@every 0s',
  ];
  const disagreements: string[] = [];
  for (const expr of exprs) {
    let local = true;
    try {
      validateCron('--cron', expr);
    } catch {
      local = false;
    }
    const id = uniqueName('cron-check');
    let server = true;
    try {
      await client.schedule.create({
        scheduleId: id,
        spec: { cronExpressions: [expr] },
        action: { type: 'startWorkflow', workflowType: 'scheduledRetrain', taskQueue },
        state: { paused: true },
      });
      await client.schedule.getHandle(id).delete();
    } catch (err) {
      if (!(err instanceof TypeError)) throw err;
      server = false;
    }
    if (local !== server) disagreements.push(`${expr}: local ${local}, server ${server}`);
  }
  expect(disagreements).toEqual([]);
});

test('delete removes the schedule; the runs it started keep running and are named', async () => {
  const running = await deleteSchedule(client, model);
  expect(running.map((w) => w.workflowId)).toContain(firstRun);
  await expect(describeSchedule(client, model)).rejects.toThrow(`no schedule ${scheduleId}`);
  await eventually('the schedule gone from list', async () =>
    (await listSchedules(client)).some((r) => r.scheduleId === scheduleId) ? undefined : true,
  );
  expect((await client.workflow.getHandle(firstRun).describe()).status.name).toBe('RUNNING');
});
