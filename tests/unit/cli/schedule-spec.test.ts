/** The flags of `recsys schedule` → Temporal Schedule options, and every error naming the flag and the value. */
import type { CalendarSpecDescription, ScheduleDescription, Range } from '@temporalio/client';
import { RecsysModel, RecsysTrigger } from '../../../lib/search-attributes';
import {
  calendarToCron,
  checkBackfillSize,
  createAsUpdate,
  createOptions,
  DEFAULT_CATCHUP_WINDOW_MS,
  formatDuration,
  modelOfSchedule,
  OVERLAP_POLICIES,
  overlapName,
  parseBackfillRange,
  parseCalendar,
  parseDuration,
  parseOverlap,
  parseOverrides,
  parseScheduleFlags,
  summarizeSpec,
  updateOptions,
  validateCron,
  type ScheduleContext,
} from '../../../cli/schedule-spec';

const ctx: ScheduleContext = { taskQueue: 'q', who: 'ann@host' };
const H = 3_600_000;

describe('durations', () => {
  it.each([
    ['6h', 6 * H],
    ['30m', 30 * 60_000],
    ['1d', 24 * H],
    ['1h30m', 1.5 * H],
    ['90s', 90_000],
    ['1.5h', 1.5 * H],
    ['250ms', 250],
  ])('%s', (text, ms) => expect(parseDuration('--every', text)).toBe(ms));

  it.each(['6x', '', '6', 'h', '-1h', '1h 30m', 'six hours'])('refuses %j naming the flag and value', (text) => {
    expect(() => parseDuration('--jitter', text)).toThrow(`--jitter ${JSON.stringify(text)}: not a duration`);
  });

  it('formats back to the shortest text', () => {
    expect(formatDuration(1.5 * H)).toBe('1h30m');
    expect(formatDuration(24 * H + 5_000)).toBe('1d5s');
    expect(formatDuration(0)).toBe('0s');
  });
});

describe('overlap policies', () => {
  it('maps every flag spelling to the SDK value and back', () => {
    for (const [name, policy] of Object.entries(OVERLAP_POLICIES)) {
      expect(parseOverlap('--overlap', name)).toBe(policy);
      expect(overlapName(policy)).toBe(name);
    }
  });

  it('names the allowed values on a bad one', () => {
    expect(() => parseOverlap('--overlap', 'sometimes')).toThrow(
      '--overlap "sometimes": unknown overlap policy; use one of skip, buffer-one, buffer-all, cancel-other, terminate-other, allow-all',
    );
  });
});

describe('cron strings (the server grammar)', () => {
  it.each([
    '0 3 * * *',
    '*/15 * * * *',
    '0 0 1 jan,jul *',
    '0 9 * * MON-FRI',
    '0 0 * * 7',
    '0 0 * * sun-sat',
    '0 30 4 * * * 2030',
    '0 0 * * * 2030',
    '5-55/10 * * * *',
    '@daily',
    '@hourly',
    '@every 6h',
    '@every 1d/3h',
    'CRON_TZ=Europe/Paris 0 3 * * MON-FRI',
    'TZ=UTC 0 3 * * *',
    '0 3 * * * # nightly',
  ])('accepts %j', (expr) => expect(() => validateCron('--cron', expr)).not.toThrow());

  it.each([
    ['0 25 * * *', 'hour "25" is not in range [0-23]'],
    ['0 3 * *', 'has 4 fields'],
    ['0 0 0 0 0 0 0 0', 'has 8 fields'],
    ['60 * * * *', 'minute "60" is not in range [0-59]'],
    ['0 0 31-1 * *', 'day of month "31-1": the end is before the start'],
    ['1-5-7 * * * *', 'minute "1-5-7" has more than one -'],
    ['3/5/7 * * * *', 'minute "3/5/7" has more than one /'],
    ['*/0 * * * *', 'minute "*/0" needs a step of 1 or more'],
    ['0 3 * * MON-', 'day of week "MON-": the end is before the start or not in range [0-7]'],
    ['0 3 * foo *', 'month "foo" is not in range [1-12]'],
    ['0 0 * * * 1999', 'year "1999" is not in range [2000-2100]'],
    ['@every', 'needs an interval after @every'],
    ['@every 6h/7h', 'the offset after / must be shorter than the interval'],
    ['@every 0s', '@every "0s": must be at least 1s'],
    ['@every 1500ms', '@every "1500ms": must be a whole number of seconds'],
    ['@every 6h/x', 'offset "x": not a duration'],
    ['@weekdays', 'unknown shorthand'],
    ['TZ=UTC', 'has a time zone but no fields'],
  ])('refuses %j: %s', (expr, reason) => {
    expect(() => validateCron('--cron', expr)).toThrow(reason);
    expect(() => validateCron('--cron', expr)).toThrow(`--cron ${JSON.stringify(expr)}`);
  });

  it('reports every bad field at once', () => {
    expect(() => validateCron('--cron', '61 25 * * *')).toThrow(
      'minute "61" is not in range [0-59]; hour "25" is not in range [0-23]',
    );
  });
});

describe('calendar JSON', () => {
  it('takes one spec or a list; months and weekdays by name, prefix or number', () => {
    expect(
      parseCalendar('--calendar', '{"hour": 3, "dayOfWeek": {"start": "mon", "end": 5}, "month": [1, "jul"]}'),
    ).toEqual([
      {
        hour: 3,
        dayOfWeek: { start: 'MONDAY', end: 'FRIDAY', step: 1 },
        month: ['JANUARY', 'JULY'],
      },
    ]);
    expect(
      parseCalendar('--calendar', '[{"minute": "*"}, {"hour": {"start": 0, "end": 23, "step": 6}, "comment": "c"}]'),
    ).toEqual([{ minute: '*' }, { hour: { start: 0, end: 23, step: 6 }, comment: 'c' }]);
  });

  it.each([
    ['{"hour": 24}', 'calendar.hour: 24 is not in range [0-23]'],
    ['{"hours": 3}', 'calendar: unknown field "hours"'],
    ['{"hour": {"start": 5, "end": 2}}', 'calendar.hour: end 2 is before start 5'],
    ['{"hour": {"start": 0, "end": 23, "step": 0}}', 'calendar.hour.step: 0 must be an integer of 1 or more'],
    ['{"dayOfWeek": "Funday"}', 'calendar.dayOfWeek: "Funday" is not a day of week name'],
    ['{"dayOfWeek": 7}', 'calendar.dayOfWeek: 7 is not in range [0-6]'],
    ['[{"hour": 1}, {"minute": [1, 99]}]', '[1].minute[1]: 99 is not in range [0-59]'],
    ['{"hour": []}', 'calendar.hour: an empty list matches nothing'],
    ['[]', 'an empty list never runs'],
    ['"daily"', 'calendar: must be an object'],
    ['{hour: 3}', 'not JSON'],
  ])('refuses %s', (json, reason) => {
    expect(() => parseCalendar('--calendar', json)).toThrow(`--calendar ${JSON.stringify(json)}: `);
    expect(() => parseCalendar('--calendar', json)).toThrow(reason);
  });
});

describe('retrain overrides', () => {
  it('passes a valid recipe change on as written', () => {
    const text = '{"train": {"epochs": 5}, "autoRollout": false, "topK": 20, "gates": {}}';
    expect(parseOverrides('--overrides', text)).toEqual(JSON.parse(text));
  });

  it.each([
    [
      '{"epochs": 5}',
      'Unrecognized key: "epochs" (allowed: train, validation, gates, autoRollout, rollout, nprocPerNode, topK)',
    ],
    ['{"nprocPerNode": 0}', 'nprocPerNode: '],
    ['{"autoRollout": "yes"}', 'autoRollout: '],
    ['{"gates": {"bogus": 1}}', 'gates is invalid'],
    ['{"rollout": {"canary": {"steps": "all"}}}', 'rollout is invalid: canary.steps'],
    ['[1]', '(root): '],
    ['{', 'not JSON'],
  ])('refuses %s', (json, reason) => {
    expect(() => parseOverrides('--overrides', json)).toThrow(`--overrides ${JSON.stringify(json)}: `);
    expect(() => parseOverrides('--overrides', json)).toThrow(reason);
  });
});

describe('flags', () => {
  it('refuses two timings, naming both', () => {
    expect(() => parseScheduleFlags({ every: '6h', cron: '0 3 * * *' })).toThrow(
      '--every "6h" and --cron "0 3 * * *": give only one of --every, --cron, --calendar',
    );
    expect(() => parseScheduleFlags({ cron: '@daily', calendar: '{}' })).toThrow('give only one of');
  });

  it('an offset needs --every and must be shorter than it', () => {
    expect(() => parseScheduleFlags({ cron: '@daily', offset: '1h' })).toThrow('--offset "1h": needs --every');
    expect(() => parseScheduleFlags({ every: '1h', offset: '1h' })).toThrow(
      '--offset "1h": must be shorter than --every "1h"',
    );
    expect(parseScheduleFlags({ every: '1d', offset: '3h' }).timing).toEqual({
      kind: 'interval',
      intervals: [{ every: 24 * H, offset: 3 * H }],
    });
  });

  it('refuses what the server would round or raise silently', () => {
    expect(() => parseScheduleFlags({ every: '1500ms' })).toThrow(
      '--every "1500ms": must be a whole number of seconds',
    );
    expect(() => parseScheduleFlags({ every: '0s' })).toThrow('--every "0s": must be at least 1s');
    expect(() => parseScheduleFlags({ catchupWindow: '5s' })).toThrow('--catchup-window "5s": must be at least 10s');
  });

  it('leaves out what was not given, keeps an explicit false', () => {
    expect(parseScheduleFlags({})).toEqual({});
    expect(parseScheduleFlags({ pauseOnFailure: false, jitter: '5m', overlap: 'buffer-one' })).toEqual({
      pauseOnFailure: false,
      jitterMs: 5 * 60_000,
      overlap: 'BUFFER_ONE',
    });
  });
});

describe('create', () => {
  it('defaults: overlap SKIP, catch-up 1h, pause on failure, not paused; the action is the retrain contract', () => {
    const o = createOptions('m1', parseScheduleFlags({ every: '6h' }), ctx);
    expect(o.scheduleId).toBe('retrain-schedule-m1');
    expect(o.spec).toEqual({ intervals: [{ every: 6 * H, offset: 0 }], jitter: 0 });
    expect(o.policies).toEqual({ overlap: 'SKIP', catchupWindow: DEFAULT_CATCHUP_WINDOW_MS, pauseOnFailure: true });
    expect(o.state).toEqual({ paused: false, note: 'created by ann@host with recsys schedule create' });
    expect(o.memo).toEqual({ kind: 'recsys-retrain-schedule', model: 'm1', createdBy: 'ann@host' });
    expect(o.action).toMatchObject({
      type: 'startWorkflow',
      workflowType: 'scheduledRetrain',
      workflowId: 'scheduled-retrain-m1',
      taskQueue: 'q',
      args: [{ model: 'm1' }],
      typedSearchAttributes: [
        { key: RecsysModel, value: 'm1' },
        { key: RecsysTrigger, value: 'schedule' },
      ],
    });
  });

  it('takes every flag', () => {
    const o = createOptions(
      'm1',
      parseScheduleFlags({
        cron: '0 3 * * *',
        jitter: '10m',
        overlap: 'buffer-one',
        catchupWindow: '15m',
        pauseOnFailure: false,
        note: 'nightly',
        overrides: '{"topK": 20}',
        paused: true,
      }),
      ctx,
    );
    expect(o.spec).toEqual({ cronExpressions: ['0 3 * * *'], jitter: 600_000 });
    expect(o.policies).toEqual({ overlap: 'BUFFER_ONE', catchupWindow: 900_000, pauseOnFailure: false });
    expect(o.state).toEqual({ paused: true, note: 'nightly' });
    expect(o.action.args).toEqual([{ model: 'm1', overrides: { topK: 20 } }]);
  });

  it('needs a timing', () => {
    expect(() => createOptions('m1', {}, ctx)).toThrow('recsys schedule create m1: say when it runs with --every');
  });
});

const full = (start: number, end: number): Range<number>[] => [{ start, end, step: 1 }];
const one = (v: number): Range<number>[] => [{ start: v, end: v, step: 1 }];
const nightly: CalendarSpecDescription = {
  second: one(0),
  minute: one(0),
  hour: one(3),
  dayOfMonth: full(1, 31),
  month: [{ start: 'JANUARY', end: 'DECEMBER', step: 1 }],
  year: [],
  dayOfWeek: [{ start: 'MONDAY', end: 'FRIDAY', step: 1 }],
};

function described(over: Partial<ScheduleDescription> = {}): ScheduleDescription {
  return {
    scheduleId: 'retrain-schedule-m1',
    spec: { calendars: [nightly], intervals: [], skip: [], jitter: 60_000, timezone: 'Europe/Paris' },
    action: {
      type: 'startWorkflow',
      workflowType: 'scheduledRetrain',
      workflowId: 'scheduled-retrain-m1',
      taskQueue: 'q',
      args: [{ model: 'm1', overrides: { topK: 7 } }],
    },
    policies: { overlap: 'BUFFER_ALL', catchupWindow: 7_200_000, pauseOnFailure: false },
    state: { paused: true, note: 'held', remainingActions: undefined },
    ...over,
  } as ScheduleDescription;
}

describe('update', () => {
  it('changes only what is given', () => {
    const u = updateOptions('m1', described(), parseScheduleFlags({ jitter: '2m' }), ctx);
    expect(u.spec.calendars).toEqual([nightly]);
    expect(u.spec.timezone).toBe('Europe/Paris');
    expect(u.spec.jitter).toBe(120_000);
    expect(u.policies).toEqual({ overlap: 'BUFFER_ALL', catchupWindow: 7_200_000, pauseOnFailure: false });
    expect(u.state).toMatchObject({ paused: true, note: 'updated by ann@host with recsys schedule update' });
    expect(u.action.args).toEqual([{ model: 'm1', overrides: { topK: 7 } }]);
    expect(u.typedSearchAttributes).toEqual([{ key: RecsysModel, value: 'm1' }]);
  });

  it('a new timing replaces the old one and its time zone', () => {
    const u = updateOptions(
      'm1',
      described(),
      parseScheduleFlags({ every: '30m', overlap: 'skip', paused: false }),
      ctx,
    );
    expect(u.spec).toEqual({ intervals: [{ every: 1_800_000, offset: 0 }], skip: [], jitter: 60_000 });
    expect(u.policies?.overlap).toBe('SKIP');
    expect(u.state).toMatchObject({ paused: false });
  });

  it('create on an existing schedule states the whole recipe, but keeps its pause state', () => {
    const u = createAsUpdate('m1', described(), parseScheduleFlags({ every: '6h' }), ctx);
    expect(u.spec).toEqual({ intervals: [{ every: 6 * H, offset: 0 }], skip: [], jitter: 0 });
    expect(u.policies).toEqual({ overlap: 'SKIP', catchupWindow: DEFAULT_CATCHUP_WINDOW_MS, pauseOnFailure: true });
    expect(u.action.args).toEqual([{ model: 'm1' }]);
    expect(u.state).toMatchObject({ paused: true, note: 'updated by ann@host with recsys schedule create' });
    expect(() => createAsUpdate('m1', described(), {}, ctx)).toThrow('say when it runs');
  });
});

describe('reading schedules back', () => {
  it('renders a described calendar as cron', () => {
    expect(calendarToCron(nightly)).toBe('0 3 * * MON-FRI');
    expect(
      calendarToCron({
        ...nightly,
        second: one(30),
        hour: [{ start: 0, end: 23, step: 6 }],
        dayOfWeek: [{ start: 'SUNDAY', end: 'SATURDAY', step: 1 }],
        month: [
          { start: 'JANUARY', end: 'JANUARY', step: 1 },
          { start: 'JULY', end: 'JULY', step: 1 },
        ],
        year: one(2030),
      }),
    ).toBe('30 0 */6 * JAN,JUL * 2030');
  });

  it('summarises a spec in one line', () => {
    expect(summarizeSpec({ intervals: [{ every: 6 * H, offset: 30 * 60_000 }], calendars: [], jitter: 300_000 })).toBe(
      'every 6h offset 30m, jitter 5m',
    );
    expect(summarizeSpec({ calendars: [{ ...nightly, comment: 'nightly' }], timezone: 'Europe/Paris' })).toBe(
      'cron "0 3 * * MON-FRI" Europe/Paris # nightly',
    );
  });

  it('tells retrain schedules from others', () => {
    const action = { type: 'startWorkflow' as const, workflowType: 'scheduledRetrain' };
    expect(modelOfSchedule({ scheduleId: 'retrain-schedule-a-b', memo: { model: 'a-b' }, action })).toBe('a-b');
    expect(modelOfSchedule({ scheduleId: 'retrain-schedule-c', action })).toBe('c');
    expect(modelOfSchedule({ scheduleId: 'nightly-report', action })).toBeUndefined();
    expect(
      modelOfSchedule({ scheduleId: 'retrain-schedule-x', action: { ...action, workflowType: 'other' } }),
    ).toBeUndefined();
  });
});

describe('backfill', () => {
  const now = new Date('2025-02-01T00:00:00Z');

  it('takes an ISO range in the past', () => {
    expect(parseBackfillRange('2025-01-30T00:00:00Z', '2025-01-31T00:00:00Z', now)).toEqual({
      start: new Date('2025-01-30T00:00:00Z'),
      end: new Date('2025-01-31T00:00:00Z'),
    });
  });

  it.each([
    ['yesterday', '2025-01-31T00:00:00Z', '--from "yesterday": not an ISO 8601 time'],
    ['2025-01-30T00:00:00Z', '2025-13-45', '--to "2025-13-45": not an ISO 8601 time'],
    ['2025-01-31T00:00:00Z', '2025-01-30T00:00:00Z', '--to must be after --from'],
    ['2025-01-30T00:00:00Z', '2025-02-02T00:00:00Z', '--to "2025-02-02T00:00:00Z": is in the future'],
  ])('refuses --from %s --to %s', (from, to, reason) => {
    expect(() => parseBackfillRange(from, to, now)).toThrow(reason);
  });

  it('refuses more than 100 actions, naming the range', () => {
    const range = parseBackfillRange('2025-01-01T00:00:00Z', '2025-01-31T00:00:00Z', now);
    expect(() => checkBackfillSize(range, 100)).not.toThrow();
    expect(() => checkBackfillSize(range, 101)).toThrow(
      'backfill --from 2025-01-01T00:00:00.000Z --to 2025-01-31T00:00:00.000Z covers 101 scheduled times; at most 100 per backfill',
    );
    expect(() => checkBackfillSize(range, 1000, 100, 1000)).toThrow('covers at least 1000 scheduled times');
  });
});
