/**
 * `recsys schedule create|update|describe|list|pause|unpause|trigger|backfill|delete`: scheduled retraining of a model
 * with a Temporal Schedule (`retrain-schedule-<model>`) that starts `scheduledRetrain` on each tick. The flags become
 * schedule options in cli/schedule-spec.ts; this module talks to the server. Each operation is an exported function
 * taking a Client, so tests drive them in-process; the commander actions only print what they return.
 */
import os from 'node:os';
import type { Command } from 'commander';
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
} from '@temporalio/client';
import { msNumberToTs } from '@temporalio/common/lib/time';
import { config } from '../../lib/config';
import { retrainScheduleId, scheduledRetrainWorkflowId, type RetrainOverrides } from '../../workflows/retrain-api';
import { table } from '../format';
import {
  createAsUpdate,
  createOptions,
  DEFAULT_CATCHUP_WINDOW_MS,
  formatDuration,
  MAX_BACKFILL_ACTIONS,
  MIN_CATCHUP_WINDOW_MS,
  modelOfSchedule,
  OVERLAP_POLICIES,
  overlapName,
  overridesOf,
  parseBackfillRange,
  checkBackfillSize,
  parseOverlap,
  parseScheduleFlags,
  ScheduleFlagError,
  summarizeSpec,
  updateOptions,
  type OverlapPolicy,
  type ScheduleContext,
  type ScheduleFlags,
} from '../schedule-spec';
import { temporalClient, webUiUrl } from '../temporal';

const who = () => `${os.userInfo().username}@${os.hostname()}`;

/** The server stops listing matching times here (maxListMatchingTimesCount). */
const SERVER_LIST_CAP = 1000;

export interface ScheduleCliOptions {
  /** Task queue of the started workflows (default: config().taskQueue). */
  taskQueue?: string;
  /** Recorded in notes and the memo (default: user@host). */
  who?: string;
}

const contextOf = (o: ScheduleCliOptions = {}): ScheduleContext => ({
  taskQueue: o.taskQueue ?? config().taskQueue,
  who: o.who ?? who(),
});

export function scheduleUiUrl(scheduleId: string): string {
  const cfg = config();
  return `${cfg.temporalUiUrl}/namespaces/${cfg.temporalNamespace}/schedules/${encodeURIComponent(scheduleId)}`;
}

export class NoSuchScheduleError extends Error {
  override name = 'NoSuchScheduleError';
  constructor(readonly model: string) {
    super(
      `no schedule ${retrainScheduleId(model)}; create it with recsys schedule create ${model} --every 6h ` +
        '(or --cron "<expr>" / --calendar \'<json>\')',
    );
  }
}

/** Runs `fn` on the model's schedule; a schedule the server does not know becomes NoSuchScheduleError. */
async function onSchedule<T>(client: Client, model: string, fn: (h: ScheduleHandle) => Promise<T>): Promise<T> {
  try {
    return await fn(client.schedule.getHandle(retrainScheduleId(model)));
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new NoSuchScheduleError(model);
    throw err;
  }
}

/** The server's spec check (the local one mirrors it, so this is rare): say which schedule it refused. */
function refused(model: string, err: unknown): never {
  if (err instanceof TypeError)
    throw new ScheduleFlagError(`the server refused the schedule of ${model}: ${err.message}`);
  throw err;
}

// ---------------------------------------------------------------------------------------------------------------

export interface CreateResult {
  scheduleId: string;
  outcome: 'created' | 'updated';
  description: ScheduleDescription;
}

/** Creates the model's schedule, or, when it exists, updates it to exactly these flags (create's defaults included). */
export async function createSchedule(
  client: Client,
  model: string,
  flags: ScheduleFlags,
  opts: ScheduleCliOptions = {},
): Promise<CreateResult> {
  const ctx = contextOf(opts);
  const change = parseScheduleFlags(flags);
  const options = createOptions(model, change, ctx);
  let outcome: CreateResult['outcome'] = 'created';
  try {
    await client.schedule.create(options);
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) refused(model, err);
    outcome = 'updated';
    await onSchedule(client, model, (h) => h.update((prev) => createAsUpdate(model, prev, change, ctx))).catch(
      (e: unknown) => refused(model, e),
    );
  }
  const description = await onSchedule(client, model, (h) => h.describe());
  return { scheduleId: options.scheduleId, outcome, description };
}

/** Changes only what the flags give. */
export async function updateSchedule(
  client: Client,
  model: string,
  flags: ScheduleFlags,
  opts: ScheduleCliOptions = {},
): Promise<ScheduleDescription> {
  const ctx = contextOf(opts);
  const change = parseScheduleFlags(flags);
  if (Object.values(change).every((v) => v === undefined))
    throw new ScheduleFlagError(
      `recsys schedule update ${model}: nothing to change; give --every, --cron, --calendar, --jitter, --overlap, ` +
        '--catchup-window, --[no-]pause-on-failure, --note, --overrides or --paused',
    );
  await onSchedule(client, model, (h) => h.update((prev) => updateOptions(model, prev, change, ctx))).catch(
    (e: unknown) => refused(model, e),
  );
  return onSchedule(client, model, (h) => h.describe());
}

// ---------------------------------------------------------------------------------------------------------------

export interface WorkflowRef {
  workflowId: string;
  runId: string;
  webUi: string;
}

export interface ScheduleReport {
  scheduleId: string;
  model: string;
  webUi: string;
  spec: string;
  overlap: string;
  catchupWindow: string;
  pauseOnFailure: boolean;
  paused: boolean;
  note?: string;
  workflowType: string;
  workflowIdPrefix?: string;
  taskQueue?: string;
  overrides?: RetrainOverrides;
  createdAt: string;
  updatedAt?: string;
  actionsTaken: number;
  skippedOverlap: number;
  missedCatchupWindow: number;
  nextActionTimes: string[];
  recentActions: (WorkflowRef & { scheduledAt: string; takenAt: string })[];
  running: WorkflowRef[];
}

const ref = (w: { workflowId: string; firstExecutionRunId: string }): WorkflowRef => ({
  workflowId: w.workflowId,
  runId: w.firstExecutionRunId,
  webUi: webUiUrl(w.workflowId, w.firstExecutionRunId),
});

/**
 * Running workflows the schedule started, from visibility (eventually consistent). The schedule's own list holds only
 * the runs its overlap policy watches (none of those started under ALLOW_ALL), so describe and delete merge both.
 */
async function runningStartedBy(client: Client, scheduleId: string): Promise<WorkflowRef[]> {
  const out: WorkflowRef[] = [];
  const query = `TemporalScheduledById = '${scheduleId.replace(/'/g, "\\'")}' AND ExecutionStatus = 'Running'`;
  for await (const wf of client.workflow.list({ query }))
    out.push({ workflowId: wf.workflowId, runId: wf.runId, webUi: webUiUrl(wf.workflowId, wf.runId) });
  return out;
}

function mergeRefs(...lists: WorkflowRef[][]): WorkflowRef[] {
  const byRun = new Map<string, WorkflowRef>();
  for (const w of lists.flat()) byRun.set(`${w.workflowId}/${w.runId}`, w);
  return [...byRun.values()].sort((a, b) => a.workflowId.localeCompare(b.workflowId));
}

export function scheduleReport(model: string, d: ScheduleDescription, alsoRunning: WorkflowRef[] = []): ScheduleReport {
  return {
    scheduleId: d.scheduleId,
    model,
    webUi: scheduleUiUrl(d.scheduleId),
    spec: summarizeSpec(d.spec),
    overlap: overlapName(d.policies.overlap),
    catchupWindow: formatDuration(d.policies.catchupWindow),
    pauseOnFailure: d.policies.pauseOnFailure,
    paused: d.state.paused,
    note: d.state.note,
    workflowType: d.action.workflowType,
    workflowIdPrefix: d.action.workflowId,
    taskQueue: d.action.taskQueue,
    overrides: overridesOf(d),
    createdAt: d.info.createdAt.toISOString(),
    updatedAt: d.info.lastUpdatedAt?.toISOString(),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
    missedCatchupWindow: d.info.numActionsMissedCatchupWindow,
    nextActionTimes: d.info.nextActionTimes.slice(0, 5).map((t) => t.toISOString()),
    recentActions: d.info.recentActions.map((a) => ({
      ...ref(a.action.workflow),
      scheduledAt: a.scheduledAt.toISOString(),
      takenAt: a.takenAt.toISOString(),
    })),
    running: mergeRefs(
      d.info.runningActions.map((a) => ref(a.workflow)),
      alsoRunning,
    ),
  };
}

export async function describeSchedule(client: Client, model: string): Promise<ScheduleReport> {
  const d = await onSchedule(client, model, (h) => h.describe());
  return scheduleReport(model, d, await runningStartedBy(client, d.scheduleId));
}

export function printScheduleReport(r: ScheduleReport): void {
  console.log(`${r.scheduleId}: ${r.paused ? 'PAUSED' : 'active'}${r.note ? ` (${r.note})` : ''}`);
  console.log(`  when:           ${r.spec}`);
  console.log(
    `  policies:       overlap ${r.overlap}, catch-up window ${r.catchupWindow}, ` +
      `pause on failure ${r.pauseOnFailure ? 'yes' : 'no'}`,
  );
  console.log(
    `  starts:         ${r.workflowType} ${r.workflowIdPrefix ?? ''}-<time> on task queue ${r.taskQueue ?? '?'}`,
  );
  if (r.overrides) console.log(`  overrides:      ${JSON.stringify(r.overrides)}`);
  console.log(
    `  actions:        ${r.actionsTaken} taken, ${r.skippedOverlap} skipped (overlap), ` +
      `${r.missedCatchupWindow} missed (catch-up window)`,
  );
  console.log(`  next runs:      ${r.nextActionTimes.length > 0 ? r.nextActionTimes.join(', ') : 'none'}`);
  console.log(`  Web UI:         ${r.webUi}`);
  if (r.running.length > 0) {
    console.log('\nRunning:');
    for (const w of r.running) console.log(`  ${w.workflowId}  ${w.webUi}`);
  }
  if (r.recentActions.length > 0) {
    console.log('\nRecent actions:');
    console.log(
      table(
        ['scheduled', 'taken', 'workflow', 'Web UI'],
        r.recentActions.map((a) => [a.scheduledAt, a.takenAt, a.workflowId, a.webUi]),
      ),
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface ScheduleRow {
  scheduleId: string;
  /** Undefined for schedules that are not retrain schedules (listed with --all). */
  model?: string;
  workflowType?: string;
  spec: string;
  paused: boolean;
  note?: string;
  nextRun?: string;
  lastRun?: string;
  lastWorkflowId?: string;
}

/** The retrain schedules (all schedules of the namespace with `all`), by id. Listing is eventually consistent. */
export async function listSchedules(client: Client, opts: { all?: boolean } = {}): Promise<ScheduleRow[]> {
  const rows: ScheduleRow[] = [];
  for await (const s of client.schedule.list()) {
    const model = modelOfSchedule(s);
    if (model === undefined && !opts.all) continue;
    const last = s.info.recentActions.at(-1);
    rows.push({
      scheduleId: s.scheduleId,
      model,
      workflowType: s.action?.workflowType,
      spec: summarizeSpec(s.spec ?? {}),
      paused: s.state.paused,
      note: s.state.note,
      nextRun: s.info.nextActionTimes[0]?.toISOString(),
      lastRun: last?.takenAt.toISOString(),
      lastWorkflowId: last?.action.workflow.workflowId,
    });
  }
  return rows.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

// ---------------------------------------------------------------------------------------------------------------

export async function pauseSchedule(
  client: Client,
  model: string,
  paused: boolean,
  note?: string,
  opts: ScheduleCliOptions = {},
): Promise<ScheduleDescription> {
  const by = opts.who ?? who();
  return onSchedule(client, model, async (h) => {
    await h.describe(); // a clear error for an unknown schedule before the patch
    if (paused) await h.pause(note ?? `paused by ${by} with recsys schedule pause`);
    else await h.unpause(note ?? `unpaused by ${by} with recsys schedule unpause`);
    return h.describe();
  });
}

export interface TriggerResult {
  scheduleId: string;
  overlap: OverlapPolicy;
  /** started: a workflow started; skipped/buffered: the overlap policy held it back; pending: nothing seen yet. */
  outcome: 'started' | 'skipped' | 'buffered' | 'pending';
  started?: WorkflowRef;
  /** What was running when it was skipped or buffered. */
  running: WorkflowRef[];
}

/**
 * Takes one action now. The SDK's trigger() defaults to ALLOW_ALL, which would start a retrain next to a running one;
 * this passes the schedule's own overlap policy unless `overlap` says otherwise, then watches what the server did.
 */
export async function triggerSchedule(
  client: Client,
  model: string,
  opts: { overlap?: OverlapPolicy; waitMs?: number } = {},
): Promise<TriggerResult> {
  return onSchedule(client, model, async (h) => {
    const before = await h.describe();
    const overlap: OverlapPolicy = opts.overlap ?? before.policies.overlap ?? 'SKIP';
    const bufferOf = (d: ScheduleDescription) => d.raw.info?.bufferSize?.toNumber() ?? 0;
    await h.trigger(overlap);
    const deadline = Date.now() + (opts.waitMs ?? 10_000);
    for (;;) {
      const d = await h.describe();
      const running = d.info.runningActions.map((a) => ref(a.workflow));
      if (d.info.numActionsTaken > before.info.numActionsTaken) {
        const newest = [...d.info.recentActions].sort((a, b) => a.takenAt.getTime() - b.takenAt.getTime()).at(-1);
        return {
          scheduleId: h.scheduleId,
          overlap,
          outcome: 'started',
          started: newest && ref(newest.action.workflow),
          running,
        };
      }
      if (d.info.numActionsSkippedOverlap > before.info.numActionsSkippedOverlap)
        return { scheduleId: h.scheduleId, overlap, outcome: 'skipped', running };
      if (bufferOf(d) > bufferOf(before)) return { scheduleId: h.scheduleId, overlap, outcome: 'buffered', running };
      if (Date.now() > deadline) return { scheduleId: h.scheduleId, overlap, outcome: 'pending', running };
      await new Promise((r) => setTimeout(r, 250));
    }
  });
}

export interface BackfillResult {
  scheduleId: string;
  start: string;
  end: string;
  overlap: OverlapPolicy;
  /** The schedule's times in [start, end]: the actions the backfill takes (before the overlap policy). */
  times: string[];
}

/** Takes the actions of a past range now, refusing more than MAX_BACKFILL_ACTIONS of them. */
export async function backfillSchedule(
  client: Client,
  model: string,
  opts: { from: string; to: string; overlap?: OverlapPolicy; now?: Date; max?: number },
): Promise<BackfillResult> {
  const range = parseBackfillRange(opts.from, opts.to, opts.now ?? new Date());
  return onSchedule(client, model, async (h) => {
    const d = await h.describe();
    const overlap: OverlapPolicy = opts.overlap ?? d.policies.overlap ?? 'SKIP';
    const { startTime } = await client.workflowService.listScheduleMatchingTimes({
      namespace: client.options.namespace,
      scheduleId: h.scheduleId,
      // The server makes a backfill's start inclusive by starting 1 ms before it: count the same times.
      startTime: msNumberToTs(range.start.getTime() - 1),
      endTime: msNumberToTs(range.end.getTime()),
    });
    const times = (startTime ?? []).map((t) => new Date(Number(t.seconds) * 1000 + (t.nanos ?? 0) / 1e6));
    checkBackfillSize(range, times.length, opts.max ?? MAX_BACKFILL_ACTIONS, SERVER_LIST_CAP);
    if (times.length > 0) await h.backfill({ start: range.start, end: range.end, overlap });
    return {
      scheduleId: h.scheduleId,
      start: range.start.toISOString(),
      end: range.end.toISOString(),
      overlap,
      times: times.map((t) => t.toISOString()),
    };
  });
}

/** Deletes the schedule; the workflows it started keep running (returned, so the caller can say so). */
export async function deleteSchedule(client: Client, model: string): Promise<WorkflowRef[]> {
  return onSchedule(client, model, async (h) => {
    const d = await h.describe();
    await h.delete();
    return mergeRefs(
      d.info.runningActions.map((a) => ref(a.workflow)),
      await runningStartedBy(client, h.scheduleId),
    );
  });
}

// ---------------------------------------------------------------------------------------------------------------
// commander

const OVERLAP_HELP = Object.keys(OVERLAP_POLICIES).join('|');

function addSpecOptions(cmd: Command, create: boolean): Command {
  const dflt = (text: string) => (create ? ` (default ${text})` : '');
  return cmd
    .option('--every <duration>', 'run at a fixed interval, e.g. 30m, 6h, 1d, 1h30m')
    .option('--offset <duration>', 'with --every: shift the times, e.g. --every 1d --offset 3h runs at 03:00 UTC')
    .option('--cron <expr>', 'Temporal cron string, e.g. "0 3 * * *", "@daily", "CRON_TZ=Europe/Paris 0 3 * * MON-FRI"')
    .option('--calendar <json>', 'calendar spec(s), e.g. \'{"hour": 3, "dayOfWeek": ["MONDAY", "THURSDAY"]}\'')
    .option('--jitter <duration>', `delay each run by a random amount up to this${dflt('0s')}`)
    .option('--overlap <policy>', `when the previous run is still going: ${OVERLAP_HELP}${dflt('skip')}`)
    .option(
      '--catchup-window <duration>',
      `how late a missed run may still start after an outage${dflt(formatDuration(DEFAULT_CATCHUP_WINDOW_MS))}: ` +
        "Temporal's default is a year, which would start stale retrains after a long outage; later than this, " +
        `the next scheduled run or a backfill replaces it (at least ${formatDuration(MIN_CATCHUP_WINDOW_MS)})`,
    )
    .option('--pause-on-failure', `pause the schedule when a run fails${dflt('on')}`)
    .option('--no-pause-on-failure', 'keep running after a failed run')
    .option('--note <text>', 'a note on the schedule (shown by describe and the Web UI)')
    .option(
      '--overrides <json>',
      'what each retrain changes from the champion\'s recipe, e.g. \'{"train": {"epochs": 5}}\'',
    )
    .option('--paused', create ? 'create it paused' : 'pause it');
}

function printChange(verb: string, model: string, d: ScheduleDescription): void {
  const r = scheduleReport(model, d);
  console.log(`${verb} ${r.scheduleId}: ${r.spec}; overlap ${r.overlap}, catch-up window ${r.catchupWindow}`);
  console.log(
    r.paused ? `paused: ${r.note ?? ''}` : `next runs: ${r.nextActionTimes.slice(0, 3).join(', ') || 'none'}`,
  );
  console.log(`Web UI: ${r.webUi}`);
}

const overlapFlag = (v: string | undefined) => (v === undefined ? undefined : parseOverlap('--overlap', v));

export function registerScheduleCommand(program: Command): void {
  const cmd = program
    .command('schedule')
    .description('scheduled retraining with Temporal Schedules (one schedule per model: retrain-schedule-<model>)');

  addSpecOptions(
    cmd
      .command('create')
      .description('create the retrain schedule of a model, or update it to these flags if it exists')
      .argument('<model>'),
    true,
  ).action(async (model: string, flags: ScheduleFlags) => {
    const r = await createSchedule(await temporalClient(), model, flags);
    printChange(r.outcome === 'created' ? 'created' : 'updated (it existed)', model, r.description);
  });

  addSpecOptions(
    cmd
      .command('update')
      .description('change the retrain schedule of a model: only what the flags give')
      .argument('<model>'),
    false,
  ).action(async (model: string, flags: ScheduleFlags) => {
    printChange('updated', model, await updateSchedule(await temporalClient(), model, flags));
  });

  cmd
    .command('describe')
    .description('spec, policies, state, next runs, recent and running workflows')
    .argument('<model>')
    .option('--json', 'print JSON')
    .action(async (model: string, opts: { json?: boolean }) => {
      const r = await describeSchedule(await temporalClient(), model);
      if (opts.json) console.log(JSON.stringify(r, null, 2));
      else printScheduleReport(r);
    });

  cmd
    .command('list')
    .description('the retrain schedules (all schedules with --all)')
    .option('--all', 'every schedule of the namespace')
    .option('--json', 'print JSON')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const rows = await listSchedules(await temporalClient(), opts);
      if (opts.json) console.log(JSON.stringify(rows, null, 2));
      else if (rows.length === 0) console.log(`no ${opts.all ? '' : 'retrain '}schedules`);
      else
        console.log(
          table(
            ['schedule', 'model', 'when', 'paused', 'next run', 'last run'],
            rows.map((r) => [
              r.scheduleId,
              r.model ?? `(${r.workflowType ?? '?'})`,
              r.spec,
              r.paused ? 'yes' : 'no',
              r.nextRun ?? '',
              r.lastRun ? `${r.lastRun} ${r.lastWorkflowId ?? ''}` : '',
            ]),
          ),
        );
    });

  for (const paused of [true, false]) {
    cmd
      .command(paused ? 'pause' : 'unpause')
      .description(paused ? 'stop taking scheduled actions (running workflows continue)' : 'resume scheduled actions')
      .argument('<model>')
      .option('--note <text>', 'why (shown by describe and the Web UI)')
      .action(async (model: string, opts: { note?: string }) => {
        const d = await pauseSchedule(await temporalClient(), model, paused, opts.note);
        console.log(`${d.scheduleId}: ${d.state.paused ? 'paused' : 'active'} (${d.state.note ?? ''})`);
      });
  }

  cmd
    .command('trigger')
    .description("run it now, under the schedule's own overlap policy unless --overlap is given")
    .argument('<model>')
    .option('--overlap <policy>', `${OVERLAP_HELP} (default: the schedule's)`)
    .action(async (model: string, opts: { overlap?: string }) => {
      const overlap = overlapFlag(opts.overlap);
      const r = await triggerSchedule(await temporalClient(), model, { overlap });
      const policy = overlapName(r.overlap);
      if (r.outcome === 'started')
        console.log(`started ${r.started?.workflowId ?? '?'} (overlap ${policy})\nWeb UI: ${r.started?.webUi ?? ''}`);
      else if (r.outcome === 'pending')
        console.log(
          `triggered ${r.scheduleId} (overlap ${policy}); no start seen yet: see recsys schedule describe ${model}`,
        );
      else {
        console.log(`${r.outcome} by overlap ${policy}: a run is still going`);
        for (const w of r.running) console.log(`  running: ${w.workflowId}  ${w.webUi}`);
      }
    });

  cmd
    .command('backfill')
    .description(`take the actions of a past time range now (at most ${MAX_BACKFILL_ACTIONS})`)
    .argument('<model>')
    .requiredOption('--from <time>', 'ISO 8601 start (inclusive), e.g. 2025-01-30T00:00:00Z')
    .requiredOption('--to <time>', 'ISO 8601 end (inclusive), not in the future')
    .option('--overlap <policy>', `${OVERLAP_HELP} (default: the schedule's)`)
    .action(async (model: string, opts: { from: string; to: string; overlap?: string }) => {
      const r = await backfillSchedule(await temporalClient(), model, { ...opts, overlap: overlapFlag(opts.overlap) });
      if (r.times.length === 0) console.log(`${r.scheduleId} has no times in [${r.start}, ${r.end}]: nothing to do`);
      else
        console.log(
          `backfilling ${r.scheduleId}: ${r.times.length} times from ${r.times[0]} to ${r.times.at(-1)} ` +
            `(overlap ${overlapName(r.overlap)}); follow with recsys schedule describe ${model}`,
        );
    });

  cmd
    .command('delete')
    .description('delete the schedule (workflows it started keep running)')
    .argument('<model>')
    .action(async (model: string) => {
      const running = await deleteSchedule(await temporalClient(), model);
      console.log(`deleted ${retrainScheduleId(model)}`);
      for (const w of running) console.log(`still running (not stopped): ${w.workflowId}  ${w.webUi}`);
    });

  cmd.addHelpText(
    'after',
    `\nWorkflows started by a schedule: ${scheduledRetrainWorkflowId('<model>')}-<RFC3339 time>`,
  );
}
