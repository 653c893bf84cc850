/**
 * The flags of `recsys schedule` turned into Temporal Schedule options, checked before anything reaches the server:
 * durations, cron strings (the server's own grammar: 5-7 fields, names, ranges, steps, @every, TZ=), calendar JSON,
 * overlap names, retrain overrides, backfill ranges. Pure (no I/O), so every rule is unit-tested; every error names
 * the flag and the value. The schedule starts `scheduledRetrain` (workflows/retrain-api.ts), one model per schedule.
 */
import {
  DAYS_OF_WEEK,
  MONTHS,
  type CalendarSpec,
  type CalendarSpecDescription,
  type DayOfWeek,
  type IntervalSpec,
  type Month,
  type Range,
  type ScheduleDescription,
  type ScheduleOptions,
  type ScheduleOptionsStartWorkflowAction,
  type ScheduleOverlapPolicy,
  type ScheduleSpec,
  type ScheduleSpecDescription,
  type ScheduleSummary,
  type ScheduleUpdateOptions,
} from '@temporalio/client';
import type { Workflow } from '@temporalio/common';
import { z } from 'zod';
import { parseGateConfig } from '../lib/gates/config';
import { parseRolloutConfig } from '../lib/rollout/config';
import { parseValidationConfig } from '../lib/dataset/validation-config';
import { RecsysModel, RecsysTrigger } from '../lib/search-attributes';
import {
  retrainScheduleId,
  scheduledRetrainWorkflowId,
  type RetrainOverrides,
  type ScheduledRetrainInput,
} from '../workflows/retrain-api';

/** The workflow type a retrain schedule starts (the lead's `scheduledRetrain`; named here, not imported: no bundle). */
export const SCHEDULED_RETRAIN_WORKFLOW = 'scheduledRetrain';
export const SCHEDULE_ID_PREFIX = retrainScheduleId('');
/** Memo `kind` of the schedules this CLI creates (list tells ours from others by it and by the id). */
export const SCHEDULE_MEMO_KIND = 'recsys-retrain-schedule';

/**
 * Default catch-up window. Temporal's own default is one year: after any outage (server down, laptop asleep) it would
 * start a retrain that is days late. A retrain missed by more than an hour is better left to the next scheduled one
 * or to a deliberate `backfill`.
 */
export const DEFAULT_CATCHUP_WINDOW_MS = 60 * 60_000;
/** The server raises any smaller catch-up window to 10 s; say so instead of letting it change the value silently. */
export const MIN_CATCHUP_WINDOW_MS = 10_000;
/** A backfill starts its actions all at once: more than this many retrains is a mistake in the range, not a plan. */
export const MAX_BACKFILL_ACTIONS = 100;
/** The server rejects calendar comments longer than this. */
const MAX_COMMENT_LENGTH = 200;

export class ScheduleFlagError extends Error {
  override name = 'ScheduleFlagError';
}

const fail = (flag: string, value: string, reason: string): never => {
  throw new ScheduleFlagError(`${flag} ${JSON.stringify(value)}: ${reason}`);
};

// ---------------------------------------------------------------------------------------------------------------
// durations

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_HINT = 'a number with a unit ms, s, m, h or d, e.g. 30m, 6h, 1d, 1h30m';

/** `6h`, `30m`, `1d`, `1h30m`, `90s` → milliseconds; anything else is an error naming the flag and value. */
export function parseDuration(flag: string, value: string): number {
  const text = value.trim();
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (text === '' || parts.map((p) => p[0]).join('') !== text)
    return fail(flag, value, `not a duration; use ${DURATION_HINT}`);
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]!]!, 0));
}

/** Milliseconds as the shortest `1d2h30m`-style text (`0s` for zero). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const n = Math.floor(rest / UNIT_MS[unit]!);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * UNIT_MS[unit]!;
  }
  return out;
}

/** Schedule durations are whole seconds on the server: refuse what it would round away. */
function parseSeconds(flag: string, value: string, min: number): number {
  const ms = parseDuration(flag, value);
  if (ms % 1000 !== 0) fail(flag, value, 'must be a whole number of seconds');
  if (ms < min) fail(flag, value, `must be at least ${formatDuration(min)}`);
  return ms;
}

// ---------------------------------------------------------------------------------------------------------------
// overlap policies

export const OVERLAP_POLICIES = {
  skip: 'SKIP',
  'buffer-one': 'BUFFER_ONE',
  'buffer-all': 'BUFFER_ALL',
  'cancel-other': 'CANCEL_OTHER',
  'terminate-other': 'TERMINATE_OTHER',
  'allow-all': 'ALLOW_ALL',
} as const satisfies Record<string, Exclude<ScheduleOverlapPolicy, undefined>>;
export type OverlapName = keyof typeof OVERLAP_POLICIES;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[OverlapName];

export function parseOverlap(flag: string, value: string): OverlapPolicy {
  const policy = (OVERLAP_POLICIES as Record<string, OverlapPolicy>)[value.trim().toLowerCase()];
  return policy ?? fail(flag, value, `unknown overlap policy; use one of ${Object.keys(OVERLAP_POLICIES).join(', ')}`);
}

/** `BUFFER_ONE` → `buffer-one`, the spelling of the flag. */
export function overlapName(policy: ScheduleOverlapPolicy): string {
  const entry = Object.entries(OVERLAP_POLICIES).find(([, p]) => p === policy);
  return entry ? entry[0] : String(policy ?? 'skip');
}

// ---------------------------------------------------------------------------------------------------------------
// cron strings, checked with the server's grammar (temporal service/worker/scheduler/calendar.go)

type FieldMode = 'int' | 'month' | 'dow' | 'year';
interface FieldRule {
  name: string;
  min: number;
  max: number;
  mode: FieldMode;
}
const SECOND: FieldRule = { name: 'second', min: 0, max: 59, mode: 'int' };
const MINUTE: FieldRule = { name: 'minute', min: 0, max: 59, mode: 'int' };
const HOUR: FieldRule = { name: 'hour', min: 0, max: 23, mode: 'int' };
const DAY_OF_MONTH: FieldRule = { name: 'day of month', min: 1, max: 31, mode: 'int' };
const MONTH: FieldRule = { name: 'month', min: 1, max: 12, mode: 'month' };
// 7 is Sunday too in cron strings.
const DAY_OF_WEEK: FieldRule = { name: 'day of week', min: 0, max: 7, mode: 'dow' };
const YEAR: FieldRule = { name: 'year', min: 2000, max: 2100, mode: 'year' };

const PREDEFINED: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

/** One value of a cron field: an integer, or a month (3+ letters) / weekday (2+ letters) name prefix. */
function cronValue(text: string, rule: FieldRule, min: number): number | undefined {
  const lower = text.toLowerCase();
  if (rule.mode === 'month' && text.length >= 3) {
    const i = MONTHS.findIndex((m) => m.toLowerCase().startsWith(lower));
    if (i >= 0) return i + 1 >= min ? i + 1 : undefined;
  }
  if (rule.mode === 'dow' && text.length >= 2) {
    const i = DAYS_OF_WEEK.findIndex((d) => d.toLowerCase().startsWith(lower));
    if (i >= 0) return i >= min ? i : undefined;
  }
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= rule.max ? n : undefined;
}

/** Problems of one cron field (`*`, `x`, `x-z`, `x-z/y`, `x/y`, `*\/y`, comma lists), or undefined when it is fine. */
function cronFieldProblem(text: string, rule: FieldRule): string | undefined {
  const range = `[${rule.min}-${rule.max}]`;
  for (const part of text.split(',')) {
    const slashes = part.split('/');
    if (slashes.length > 2) return `${rule.name} ${JSON.stringify(part)} has more than one /`;
    const [body, step] = slashes as [string, string | undefined];
    if (step !== undefined && !(/^\d+$/.test(step) && Number(step) >= 1))
      return `${rule.name} ${JSON.stringify(part)} needs a step of 1 or more after /`;
    if (body === '*') continue;
    const dashes = body.split('-');
    if (dashes.length > 2) return `${rule.name} ${JSON.stringify(part)} has more than one -`;
    const start = cronValue(dashes[0]!, rule, rule.min);
    if (start === undefined) return `${rule.name} ${JSON.stringify(part)} is not in range ${range}`;
    if (dashes.length === 2 && cronValue(dashes[1]!, rule, start) === undefined)
      return `${rule.name} ${JSON.stringify(part)}: the end is before the start or not in range ${range}`;
  }
  return undefined;
}

/**
 * Checks a cron string as Temporal's server reads it: optional `TZ=`/`CRON_TZ=` prefix, optional `# comment`,
 * `@every <interval>[/<offset>]`, `@daily`-style shorthands, or 5 (minute hour day-of-month month day-of-week),
 * 6 (+ year) or 7 (second first, + year) fields. Throws naming `flag`, the value and the field.
 */
export function validateCron(flag: string, value: string): void {
  let text = value.trim();
  if (/^(CRON_)?TZ=/.test(text)) {
    const space = text.indexOf(' ');
    if (space < 0) fail(flag, value, 'has a time zone but no fields');
    text = text.slice(space + 1);
  }
  const hash = text.indexOf('#');
  if (hash >= 0) {
    if (text.slice(hash + 1).trim().length > MAX_COMMENT_LENGTH)
      fail(flag, value, `the comment is longer than ${MAX_COMMENT_LENGTH} characters`);
    text = text.slice(0, hash);
  }
  text = text.trim();
  if (text.startsWith('@every')) {
    const spec = text.slice('@every'.length).trim();
    if (spec === '') fail(flag, value, 'needs an interval after @every, e.g. @every 6h or @every 6h/30m');
    const [every, offset] = spec.split('/') as [string, string | undefined];
    let everyMs = 0;
    let offsetMs = 0;
    try {
      everyMs = parseSeconds('@every', every, 1000);
      if (offset !== undefined) offsetMs = parseSeconds('offset', offset, 0);
    } catch (err) {
      fail(flag, value, (err as Error).message);
    }
    if (offsetMs >= everyMs) fail(flag, value, 'the offset after / must be shorter than the interval');
    return;
  }
  text = PREDEFINED[text] ?? text;
  if (text.startsWith('@')) fail(flag, value, `unknown shorthand; use ${Object.keys(PREDEFINED).join(', ')} or @every`);
  const fields = text.split(/\s+/).filter((f) => f !== '');
  const rules =
    fields.length === 5
      ? [MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK]
      : fields.length === 6
        ? [MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR]
        : fields.length === 7
          ? [SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR]
          : undefined;
  if (!rules)
    return fail(
      flag,
      value,
      `has ${fields.length} fields; a cron string has 5 (minute hour day-of-month month day-of-week), ` +
        '6 (+ year) or 7 (second first, + year), or is @daily, @hourly, ..., @every 6h',
    );
  const problems = fields.map((f, i) => cronFieldProblem(f, rules[i]!)).filter((p) => p !== undefined);
  if (problems.length > 0) fail(flag, value, problems.join('; '));
}

// ---------------------------------------------------------------------------------------------------------------
// calendar JSON (Temporal's CalendarSpec: second, minute, hour, dayOfMonth, month, year, dayOfWeek, comment)

type CalendarField = 'second' | 'minute' | 'hour' | 'dayOfMonth' | 'month' | 'year' | 'dayOfWeek';
const CALENDAR_FIELDS: Record<CalendarField, FieldRule> = {
  second: SECOND,
  minute: MINUTE,
  hour: HOUR,
  dayOfMonth: DAY_OF_MONTH,
  month: MONTH,
  year: YEAR,
  dayOfWeek: { ...DAY_OF_WEEK, max: 6 },
};

/** A month or weekday as the SDK wants it (`MARCH`, `MONDAY`), from a name, a 3-letter prefix or a number. */
function calendarValue(where: string, raw: unknown, rule: FieldRule): number | string {
  if (rule.mode === 'month' || rule.mode === 'dow') {
    const names: readonly string[] = rule.mode === 'month' ? MONTHS : DAYS_OF_WEEK;
    const base = rule.mode === 'month' ? 1 : 0;
    if (typeof raw === 'string') {
      const lower = raw.toLowerCase();
      const i = raw.length >= 3 ? names.findIndex((n) => n.toLowerCase().startsWith(lower)) : -1;
      if (i < 0) throw new ScheduleFlagError(`${where}: ${JSON.stringify(raw)} is not a ${rule.name} name`);
      return names[i]!;
    }
    if (Number.isInteger(raw) && (raw as number) >= rule.min && (raw as number) <= rule.max)
      return names[(raw as number) - base]!;
  } else if (Number.isInteger(raw) && (raw as number) >= rule.min && (raw as number) <= rule.max) {
    return raw as number;
  }
  throw new ScheduleFlagError(`${where}: ${JSON.stringify(raw)} is not in range [${rule.min}-${rule.max}]`);
}

function calendarRange(where: string, raw: unknown, rule: FieldRule): Range<number | string> | number | string {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return calendarValue(where, raw, rule);
  const extra = Object.keys(raw).filter((k) => !['start', 'end', 'step'].includes(k));
  if (extra.length > 0) throw new ScheduleFlagError(`${where}: unknown key ${extra[0]} (a range has start, end, step)`);
  const r = raw as { start?: unknown; end?: unknown; step?: unknown };
  const start = calendarValue(`${where}.start`, r.start, rule);
  const end = r.end === undefined ? start : calendarValue(`${where}.end`, r.end, rule);
  const names: readonly string[] = rule.mode === 'month' ? MONTHS : DAYS_OF_WEEK;
  const index = (v: number | string) => (typeof v === 'number' ? v : names.indexOf(v));
  if (index(end) < index(start))
    throw new ScheduleFlagError(`${where}: end ${JSON.stringify(r.end)} is before start ${JSON.stringify(r.start)}`);
  const step = r.step ?? 1;
  if (!Number.isInteger(step) || (step as number) < 1)
    throw new ScheduleFlagError(`${where}.step: ${JSON.stringify(r.step)} must be an integer of 1 or more`);
  return { start, end, step: step as number };
}

function calendarSpec(where: string, raw: unknown): CalendarSpec {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new ScheduleFlagError(`${where}: must be an object like {"hour": 3, "dayOfWeek": "MONDAY"}`);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'comment') {
      if (typeof value !== 'string' || value.length > MAX_COMMENT_LENGTH)
        throw new ScheduleFlagError(`${where}.comment: must be a string of at most ${MAX_COMMENT_LENGTH} characters`);
      out.comment = value;
      continue;
    }
    const rule = CALENDAR_FIELDS[key as CalendarField];
    if (!rule)
      throw new ScheduleFlagError(
        `${where}: unknown field ${JSON.stringify(key)}; use ${Object.keys(CALENDAR_FIELDS).join(', ')}, comment`,
      );
    if (value === '*') out[key] = '*';
    else if (Array.isArray(value)) {
      if (value.length === 0) throw new ScheduleFlagError(`${where}.${key}: an empty list matches nothing`);
      out[key] = value.map((v, i) => calendarRange(`${where}.${key}[${i}]`, v, rule));
    } else out[key] = calendarRange(`${where}.${key}`, value, rule);
  }
  return out;
}

/** `--calendar` JSON: one calendar spec or a list of them. Unset fields: second/minute/hour 0, the others `*`. */
export function parseCalendar(flag: string, value: string): CalendarSpec[] {
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch (err) {
    return fail(flag, value, `not JSON (${(err as Error).message})`);
  }
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) fail(flag, value, 'an empty list never runs');
  try {
    return list.map((c, i) => calendarSpec(Array.isArray(raw) ? `[${i}]` : 'calendar', c));
  } catch (err) {
    return fail(flag, value, (err as Error).message);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// retrain overrides

const Overrides = z.strictObject({
  train: z.record(z.string(), z.unknown()).optional(),
  validation: z.unknown().optional(),
  gates: z.unknown().optional(),
  autoRollout: z.boolean().optional(),
  rollout: z.unknown().optional(),
  nprocPerNode: z.number().int().positive().optional(),
  topK: z.number().int().positive().optional(),
});

/**
 * `--overrides` JSON: what each scheduled retrain changes from the champion's recipe. Checked with the same parsers
 * the training uses, so a typo fails now rather than at 3 a.m.; passed on as written (the workflow applies defaults).
 */
export function parseOverrides(flag: string, value: string): RetrainOverrides {
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch (err) {
    return fail(flag, value, `not JSON (${(err as Error).message})`);
  }
  const parsed = Overrides.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const allowed = issue.code === 'unrecognized_keys' ? ` (allowed: ${Object.keys(Overrides.shape).join(', ')})` : '';
    return fail(flag, value, `${issue.path.join('.') || '(root)'}: ${issue.message}${allowed}`);
  }
  const o = parsed.data;
  try {
    if (o.gates !== undefined) parseGateConfig(o.gates, 'gates');
    if (o.rollout !== undefined) parseRolloutConfig(o.rollout, 'rollout');
    if (o.validation !== undefined) parseValidationConfig(o.validation);
  } catch (err) {
    return fail(flag, value, (err as Error).message);
  }
  return raw as RetrainOverrides;
}

// ---------------------------------------------------------------------------------------------------------------
// flags → a change of a schedule

/** The flags of `create` and `update` as commander gives them (strings, booleans; undefined when not given). */
export interface ScheduleFlags {
  every?: string;
  offset?: string;
  cron?: string;
  calendar?: string;
  jitter?: string;
  overlap?: string;
  catchupWindow?: string;
  pauseOnFailure?: boolean;
  note?: string;
  overrides?: string;
  paused?: boolean;
}

/** When the schedule runs: exactly one of the three kinds. */
export type Timing =
  | { kind: 'interval'; intervals: IntervalSpec[] }
  | { kind: 'cron'; cronExpressions: string[] }
  | { kind: 'calendar'; calendars: CalendarSpec[] };

/** What the flags ask to set; undefined fields are left as they are (update) or defaulted (create). */
export interface ScheduleChange {
  timing?: Timing;
  jitterMs?: number;
  overlap?: OverlapPolicy;
  catchupWindowMs?: number;
  pauseOnFailure?: boolean;
  note?: string;
  overrides?: RetrainOverrides;
  paused?: boolean;
}

export function parseScheduleFlags(flags: ScheduleFlags): ScheduleChange {
  const kinds = (['every', 'cron', 'calendar'] as const).filter((k) => flags[k] !== undefined);
  if (kinds.length > 1)
    throw new ScheduleFlagError(
      `${kinds.map((k) => `--${k} ${JSON.stringify(flags[k])}`).join(' and ')}: give only one of --every, --cron, --calendar`,
    );
  if (flags.offset !== undefined && flags.every === undefined)
    fail(
      '--offset',
      flags.offset,
      'needs --every (an offset shifts the interval; a cron or calendar sets its own times)',
    );
  const change: ScheduleChange = {};
  if (flags.every !== undefined) {
    const every = parseSeconds('--every', flags.every, 1000);
    const offset = flags.offset === undefined ? 0 : parseSeconds('--offset', flags.offset, 0);
    if (offset >= every) fail('--offset', flags.offset!, `must be shorter than --every ${JSON.stringify(flags.every)}`);
    change.timing = { kind: 'interval', intervals: [{ every, offset }] };
  } else if (flags.cron !== undefined) {
    validateCron('--cron', flags.cron);
    change.timing = { kind: 'cron', cronExpressions: [flags.cron.trim()] };
  } else if (flags.calendar !== undefined) {
    change.timing = { kind: 'calendar', calendars: parseCalendar('--calendar', flags.calendar) };
  }
  if (flags.jitter !== undefined) change.jitterMs = parseSeconds('--jitter', flags.jitter, 0);
  if (flags.overlap !== undefined) change.overlap = parseOverlap('--overlap', flags.overlap);
  if (flags.catchupWindow !== undefined)
    change.catchupWindowMs = parseSeconds('--catchup-window', flags.catchupWindow, MIN_CATCHUP_WINDOW_MS);
  if (flags.pauseOnFailure !== undefined) change.pauseOnFailure = flags.pauseOnFailure;
  if (flags.note !== undefined) change.note = flags.note;
  if (flags.overrides !== undefined) change.overrides = parseOverrides('--overrides', flags.overrides);
  if (flags.paused !== undefined) change.paused = flags.paused;
  return change;
}

// ---------------------------------------------------------------------------------------------------------------
// a change → ScheduleOptions (create) or ScheduleUpdateOptions (update)

export interface ScheduleContext {
  taskQueue: string;
  /** Who runs the CLI (user@host), recorded in the memo and the default notes. */
  who: string;
}

export type RetrainAction = ScheduleOptionsStartWorkflowAction<Workflow>;

/** What each run starts: `scheduledRetrain([{ model, overrides }])`, tagged so the Web UI filters it by model. */
export function retrainAction(
  model: string,
  overrides: RetrainOverrides | undefined,
  taskQueue: string,
): RetrainAction {
  const input: ScheduledRetrainInput = { model };
  if (overrides && Object.keys(overrides).length > 0) input.overrides = overrides;
  return {
    type: 'startWorkflow',
    workflowType: SCHEDULED_RETRAIN_WORKFLOW,
    // The server appends -<RFC3339 time>, so each run has its own id.
    workflowId: scheduledRetrainWorkflowId(model),
    taskQueue,
    args: [input],
    typedSearchAttributes: [
      { key: RecsysModel, value: model },
      { key: RecsysTrigger, value: 'schedule' },
    ],
    staticSummary: `Scheduled retrain of ${model}`,
  };
}

const timingSpec = (t: Timing): ScheduleSpec =>
  t.kind === 'interval'
    ? { intervals: t.intervals }
    : t.kind === 'cron'
      ? { cronExpressions: t.cronExpressions }
      : { calendars: t.calendars };

/** Options of a new schedule: the flags given, create's defaults for the rest (overlap skip, catch-up 1h, pause on failure). */
export function createOptions(model: string, change: ScheduleChange, ctx: ScheduleContext): ScheduleOptions {
  if (!change.timing)
    throw new ScheduleFlagError(
      `recsys schedule create ${model}: say when it runs with --every <duration> (e.g. 6h), --cron "<expr>" or --calendar '<json>'`,
    );
  return {
    scheduleId: retrainScheduleId(model),
    spec: { ...timingSpec(change.timing), jitter: change.jitterMs ?? 0 },
    action: retrainAction(model, change.overrides, ctx.taskQueue),
    policies: {
      overlap: change.overlap ?? 'SKIP',
      catchupWindow: change.catchupWindowMs ?? DEFAULT_CATCHUP_WINDOW_MS,
      pauseOnFailure: change.pauseOnFailure ?? true,
    },
    memo: { kind: SCHEDULE_MEMO_KIND, model, createdBy: ctx.who },
    typedSearchAttributes: [{ key: RecsysModel, value: model }],
    state: {
      paused: change.paused ?? false,
      note: change.note ?? `created by ${ctx.who} with recsys schedule create`,
    },
  };
}

/** The overrides a schedule passes to its runs (from its action's input). */
export function overridesOf(description: Pick<ScheduleDescription, 'action'>): RetrainOverrides | undefined {
  const input = description.action.args?.[0] as Partial<ScheduledRetrainInput> | undefined;
  return input?.overrides;
}

/**
 * An existing schedule with `change` applied; everything not in `change` stays as it is. A new timing replaces the
 * old one (and a time zone that came from an old cron string); start/end times and skips set elsewhere are kept.
 */
export function updateOptions(
  model: string,
  previous: ScheduleDescription,
  change: ScheduleChange,
  ctx: ScheduleContext,
  verb = 'update',
): ScheduleUpdateOptions {
  const spec: ScheduleSpec = { ...(previous.spec as ScheduleSpec) };
  if (change.timing) {
    delete spec.calendars;
    delete spec.intervals;
    delete spec.cronExpressions;
    delete spec.timezone;
    Object.assign(spec, timingSpec(change.timing));
  }
  if (change.jitterMs !== undefined) spec.jitter = change.jitterMs;
  const overrides = change.overrides ?? overridesOf(previous);
  return {
    spec,
    action: retrainAction(model, overrides, ctx.taskQueue),
    policies: {
      overlap: change.overlap ?? previous.policies.overlap,
      catchupWindow: change.catchupWindowMs ?? previous.policies.catchupWindow,
      pauseOnFailure: change.pauseOnFailure ?? previous.policies.pauseOnFailure,
    },
    // Only ours: the server adds its own (TemporalSchedulePaused, ...) and refuses them back.
    typedSearchAttributes: [{ key: RecsysModel, value: model }],
    state: {
      paused: change.paused ?? previous.state.paused,
      note:
        change.note ?? (changed(change) ? `updated by ${ctx.who} with recsys schedule ${verb}` : previous.state.note),
      remainingActions: previous.state.remainingActions,
    },
  };
}

const changed = (c: ScheduleChange) => Object.values(c).some((v) => v !== undefined);

/** What `create` sets on a schedule that already exists: create's options, but its pause state unless --paused. */
export function createAsUpdate(
  model: string,
  previous: ScheduleDescription,
  change: ScheduleChange,
  ctx: ScheduleContext,
): ScheduleUpdateOptions {
  createOptions(model, change, ctx); // the same checks as a create (a timing is required)
  const full: ScheduleChange = {
    ...change,
    overlap: change.overlap ?? 'SKIP',
    catchupWindowMs: change.catchupWindowMs ?? DEFAULT_CATCHUP_WINDOW_MS,
    pauseOnFailure: change.pauseOnFailure ?? true,
    jitterMs: change.jitterMs ?? 0,
    // Create states the whole recipe: no --overrides means none.
    overrides: change.overrides ?? {},
  };
  return updateOptions(model, previous, full, ctx, 'create');
}

// ---------------------------------------------------------------------------------------------------------------
// reading schedules back

/** The model a schedule retrains, or undefined when it is not one of ours. */
export function modelOfSchedule(s: Pick<ScheduleSummary, 'scheduleId' | 'memo' | 'action'>): string | undefined {
  if (!s.scheduleId.startsWith(SCHEDULE_ID_PREFIX)) return undefined;
  if (s.action && s.action.workflowType !== SCHEDULED_RETRAIN_WORKFLOW) return undefined;
  const memoModel = s.memo?.model;
  return typeof memoModel === 'string' ? memoModel : s.scheduleId.slice(SCHEDULE_ID_PREFIX.length);
}

const SHORT_MONTHS = MONTHS.map((m) => m.slice(0, 3));
const SHORT_DAYS = DAYS_OF_WEEK.map((d) => d.slice(0, 3));

/** A described calendar field back in cron notation (`*`, `3`, `1-5`, `0-59/15`, `MON,FRI`). */
function cronField(ranges: Range<number | string>[], rule: FieldRule, fullRange: [number, number]): string {
  if (ranges.length === 0) return '*';
  const num = (v: number | string) =>
    typeof v === 'number'
      ? v
      : rule.mode === 'month'
        ? MONTHS.indexOf(v as Month) + 1
        : DAYS_OF_WEEK.indexOf(v as DayOfWeek);
  const show = (v: number | string) => {
    const n = num(v);
    return rule.mode === 'month' ? SHORT_MONTHS[n - 1]! : rule.mode === 'dow' ? SHORT_DAYS[n]! : String(n);
  };
  return ranges
    .map((r) => {
      const [s, e] = [num(r.start), num(r.end)];
      const step = r.step > 1 ? `/${r.step}` : '';
      if (s === fullRange[0] && e === fullRange[1]) return `*${step}`;
      return s === e ? show(r.start) : `${show(r.start)}-${show(r.end)}${step}`;
    })
    .join(',');
}

/** A described calendar as a cron string (seconds and year only when they are not the defaults). */
export function calendarToCron(c: CalendarSpecDescription): string {
  const second = cronField(c.second, SECOND, [0, 59]);
  const year = cronField(c.year, YEAR, [YEAR.min, YEAR.max]);
  const five = [
    cronField(c.minute, MINUTE, [0, 59]),
    cronField(c.hour, HOUR, [0, 23]),
    cronField(c.dayOfMonth, DAY_OF_MONTH, [1, 31]),
    cronField(c.month, MONTH, [1, 12]),
    cronField(c.dayOfWeek, DAY_OF_WEEK, [0, 6]),
  ];
  const fields = second !== '0' ? [second, ...five, year] : year !== '*' ? [...five, year] : five;
  return fields.join(' ');
}

/** One line for humans: `every 6h offset 30m, jitter 5m` or `cron "0 3 * * *" UTC # nightly`. */
export function summarizeSpec(spec: ScheduleSpecDescription): string {
  const parts = [
    ...(spec.intervals ?? []).map(
      (i) => `every ${formatDuration(i.every)}${i.offset ? ` offset ${formatDuration(i.offset)}` : ''}`,
    ),
    ...(spec.calendars ?? []).map(
      (c) => `cron "${calendarToCron(c)}" ${spec.timezone || 'UTC'}${c.comment ? ` # ${c.comment}` : ''}`,
    ),
  ];
  let text = parts.length > 0 ? parts.join('; ') : 'no times';
  if (spec.jitter) text += `, jitter ${formatDuration(spec.jitter)}`;
  if (spec.startAt) text += `, from ${spec.startAt.toISOString()}`;
  if (spec.endAt) text += `, until ${spec.endAt.toISOString()}`;
  return text;
}

// ---------------------------------------------------------------------------------------------------------------
// backfill

export interface BackfillRange {
  start: Date;
  end: Date;
}

function parseTime(flag: string, value: string): Date {
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value.trim()) || Number.isNaN(d.getTime()))
    fail(flag, value, 'not an ISO 8601 time, e.g. 2025-01-31T00:00:00Z');
  return d;
}

/** `--from`/`--to` of a backfill: ISO times, from before to, not in the future (a backfill runs past times now). */
export function parseBackfillRange(from: string, to: string, now: Date): BackfillRange {
  const start = parseTime('--from', from);
  const end = parseTime('--to', to);
  if (end.getTime() <= start.getTime())
    throw new ScheduleFlagError(`--from ${JSON.stringify(from)} --to ${JSON.stringify(to)}: --to must be after --from`);
  if (end.getTime() > now.getTime())
    fail('--to', to, `is in the future (now ${now.toISOString()}); a backfill runs past times; use trigger for now`);
  return { start, end };
}

/**
 * Refuses a backfill that would start more than `max` actions. `count` is the schedule's matching times in the range
 * as the server lists them (it stops listing at `listCap`, so a count at the cap means at least that many).
 */
export function checkBackfillSize(
  range: BackfillRange,
  count: number,
  max = MAX_BACKFILL_ACTIONS,
  listCap = Number.POSITIVE_INFINITY,
): void {
  if (count <= max) return;
  throw new ScheduleFlagError(
    `backfill --from ${range.start.toISOString()} --to ${range.end.toISOString()} covers ` +
      `${count >= listCap ? 'at least ' : ''}${count} scheduled times; at most ${max} per backfill: shorten the range`,
  );
}
