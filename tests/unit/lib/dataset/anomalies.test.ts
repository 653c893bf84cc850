import {
  detectAnomalies,
  distances,
  MAX_PER_CHECK,
  samplingAllowance,
  summarise,
  type Anomaly,
} from '../../../../lib/dataset/anomalies';
import { activityBucket, DAY_S, HOUR_S, type DatasetStatistics } from '../../../../lib/dataset/statistics';
import { parseValidationConfig, type ValidationConfigInput } from '../../../../lib/dataset/validation-config';

/** 2023-11-14, a Tuesday, as a unix day number. */
const DAY0 = 19_675;
const SCHEMA = {
  'train.parquet': { user_idx: 'INTEGER', item_idx: 'INTEGER', ts: 'BIGINT', rating: 'FLOAT' },
  'items.parquet': { item_idx: 'INTEGER', item_id: 'VARCHAR' },
};

/** Deterministic pseudo-noise in [-1, 1) so that steady series are not perfectly flat. */
const noise = (i: number) => ((Math.sin(i * 12.9898) * 43758.5453) % 1) * 2 - 1;
const steady = (days: number, level = 1000, wobble = 0.05) =>
  Array.from({ length: days }, (_, i) => Math.round(level * (1 + wobble * noise(i + 1))));

function stats(p: {
  daily: number[];
  firstDay?: number;
  items?: Record<string, number>;
  users?: Record<string, number>;
  ratings?: Record<string, number>;
  gaps?: DatasetStatistics['gaps'];
  schema?: DatasetStatistics['schema'];
}): DatasetStatistics {
  const firstDay = p.firstDay ?? DAY0;
  const rows = p.daily.reduce((a, b) => a + b, 0);
  const items = p.items ?? { i1: rows / 2, i2: rows / 4, i3: rows / 4 };
  const users = p.users ?? { u1: rows / 2, u2: rows / 2 };
  const userActivity: Record<string, number> = {};
  for (const c of Object.values(users)) userActivity[activityBucket(c)] = (userActivity[activityBucket(c)] ?? 0) + 1;
  return {
    statisticsVersion: 1,
    rows,
    users: Object.keys(users).length,
    items: Object.keys(items).length,
    schema: p.schema ?? SCHEMA,
    timestamp: { min: firstDay * DAY_S, max: (firstDay + p.daily.length) * DAY_S - 1 },
    dailyVolume: { firstDay, counts: p.daily },
    gaps: p.gaps ?? [],
    itemCounts: items,
    userCounts: users,
    userActivity,
    ratings: p.ratings ?? { '1': rows / 2, '5': rows / 2 },
  };
}

const cfg = (input: ValidationConfigInput = {}) => parseValidationConfig(input);
const checks = (as: Anomaly[]) => as.map((a) => `${a.severity}:${a.check}`);

test('the first version runs only the within-version checks and says which it skipped', () => {
  const r = detectAnomalies(stats({ daily: steady(14) }), undefined, cfg());
  expect(r.status).toBe('pass');
  expect(r.checked).toEqual(['timestampGap']);
  expect(r.skipped.map((s) => s.check)).toContain('popularityShift');
  expect(r.skipped.find((s) => s.check === 'dailyVolumeDip')?.reason).toBe('no previous validated version');
  expect(r.summary).toBe('PASS: no anomalies (first version)');
  expect(r.previousVersion).toBeUndefined();
});

test('the same data as the previous version passes every check', () => {
  const s = stats({ daily: steady(21) });
  const r = detectAnomalies(s, { version: 'v1', stats: s }, cfg());
  expect(r.anomalies).toEqual([]);
  expect(r.status).toBe('pass');
  expect(r.checked).toHaveLength(10);
  expect(r.metrics['popularityShift.jensenShannon']).toBe(0);
  expect(r.summary).toBe('PASS: no anomalies (vs v1)');
});

describe('daily volume', () => {
  const prev = stats({ daily: steady(14) });

  test('a new day with half the volume fails, naming the day, its rows and the median around it', () => {
    const daily = steady(21);
    daily[17] = Math.round(daily[17]! / 2);
    const r = detectAnomalies(stats({ daily }), { version: 'v1', stats: prev }, cfg());
    expect(r.status).toBe('fail');
    expect(checks(r.anomalies)).toEqual(['fail:dailyVolumeDip']);
    const a = r.anomalies[0]!;
    expect(a.message).toMatch(
      new RegExp(
        `^daily volume on 2023-12-01 is ${daily[17]} rows, [45]\\d\\.\\d% of the median of the 7 days on each side ` +
          `\\([\\d,]+; [\\d.]+ robust sd below\\)$`,
      ),
    );
    expect(a.value).toBeGreaterThan(0.4);
    expect(a.value).toBeLessThan(0.6);
    expect(a.threshold).toBe(0.6);
    expect(r.summary).toMatch(/^FAIL: 1 anomaly \(dailyVolumeDip\); daily volume on 2023-12-01 is .*; vs v1$/);
  });

  test('the same dip in a bursty log (neighbours vary as much) is not an anomaly', () => {
    const daily = steady(21, 1000, 0.6);
    daily[17] = 500;
    const r = detectAnomalies(stats({ daily }), { version: 'v1', stats: prev }, cfg());
    expect(r.anomalies.filter((a) => a.check === 'dailyVolumeDip')).toEqual([]);
  });

  test('days the previous version already covered are not judged by the dip check, and partial ends never', () => {
    const daily = steady(21);
    daily[5] = 300; // an old day: accepted with the previous version
    daily[20] = 100; // the last day is partial
    const withOldDip = stats({ daily: daily.slice(0, 14) });
    const r = detectAnomalies(stats({ daily }), { version: 'v1', stats: withOldDip }, cfg());
    expect(r.anomalies).toEqual([]);
  });

  test('a day that lost rows compared with the previous version fails with both counts', () => {
    const daily = steady(14);
    const before = daily[6]!;
    daily[6] = Math.round(before * 0.7);
    const r = detectAnomalies(stats({ daily }), { version: 'v1', stats: prev }, cfg());
    expect(checks(r.anomalies)).toEqual(['fail:dailyVolumeDrop']);
    expect(r.anomalies[0]!.message).toBe(
      `daily volume on 2023-11-20 is ${daily[6].toLocaleString('en-US')} rows, 70.0% of what version v1 had for ` +
        `that day (${before.toLocaleString('en-US')})`,
    );
  });

  test('many bad days are capped per check and the last one says how many more', () => {
    const daily = steady(14).map((c, i) => (i < 10 ? Math.round(c / 3) : c));
    const r = detectAnomalies(stats({ daily }), { version: 'v1', stats: prev }, cfg());
    const drops = r.anomalies.filter((a) => a.check === 'dailyVolumeDrop');
    expect(drops).toHaveLength(MAX_PER_CHECK);
    expect(drops[MAX_PER_CHECK - 1]!.message).toContain(`(and ${10 - MAX_PER_CHECK} more dailyVolumeDrop anomalies)`);
    expect(r.anomalies.map((a) => a.check)).toContain('volumeDrop');
  });

  test('the whole version shrinking beyond maxDrop fails; within it passes', () => {
    const small = stats({ daily: steady(14).map((c) => c * 0.7) });
    const r = detectAnomalies(small, { version: 'v1', stats: prev }, cfg({ dailyVolumeDrop: { severity: 'off' } }));
    expect(checks(r.anomalies)).toEqual(['fail:volumeDrop']);
    expect(r.anomalies[0]!.message).toMatch(
      /^9,\d{3} interactions, 30\.\d% fewer than version v1 \(1\d,\d{3}\); at most 20\.0% allowed$/,
    );
    const ok = detectAnomalies(small, { version: 'v1', stats: prev }, cfg({ volumeDrop: { maxDrop: 0.4 } }));
    expect(ok.anomalies.filter((a) => a.check === 'volumeDrop')).toEqual([]);
  });
});

describe('timestamp gaps', () => {
  const gap = (fromDay: number, hours: number) => ({
    from: (DAY0 + fromDay) * DAY_S + 10 * HOUR_S,
    to: (DAY0 + fromDay) * DAY_S + (11 + hours) * HOUR_S,
    hours,
  });

  test('a long gap in a dense log fails with its hours, bounds and the rows it implies are missing', () => {
    const daily = steady(14);
    daily[6] = 400;
    daily[7] = 0;
    daily[8] = 0;
    daily[9] = 500;
    const r = detectAnomalies(stats({ daily, gaps: [gap(6, 80)] }), undefined, cfg());
    expect(checks(r.anomalies)).toEqual(['fail:timestampGap']);
    expect(r.anomalies[0]!.message).toMatch(
      /^no interactions for 80 h \(3\.3 days\) between 2023-11-20 10:00 and 2023-11-23 19:00 UTC, longer than 72 h; the days around it have a median of [\d,]+ rows, so about [\d,]+ rows are missing$/,
    );
  });

  test('the same gap in a sparse log (a few rows a day) is a pause, not an outage', () => {
    const daily = Array.from({ length: 14 }, (_, i) => (i >= 7 && i <= 9 ? 0 : 5));
    expect(detectAnomalies(stats({ daily, gaps: [gap(6, 80)] }), undefined, cfg()).anomalies).toEqual([]);
  });

  test('a gap the previous version already had is not reported again', () => {
    const s = stats({ daily: steady(14), gaps: [gap(6, 80)] });
    const r = detectAnomalies(s, { version: 'v1', stats: s }, cfg());
    expect(r.anomalies).toEqual([]);
  });
});

describe('categories and distributions', () => {
  const prev = stats({
    daily: steady(14),
    items: { i1: 5000, i2: 3000, i3: 2000, i4: 1000, i5: 500 },
    users: { u1: 100, u2: 30, u3: 8 },
  });

  test('a broken item-id mapping (renamed ids) fails on unseen items and on the popularity shift', () => {
    const items = Object.fromEntries(Object.entries(prev.itemCounts).map(([id, c]) => [`item-${id}`, c]));
    const r = detectAnomalies(
      stats({ daily: steady(14), items, users: prev.userCounts }),
      { version: 'v1', stats: prev },
      cfg(),
    );
    expect(r.status).toBe('fail');
    expect(checks(r.anomalies)).toEqual(['fail:unseenItems', 'fail:popularityShift']);
    expect(r.anomalies[0]!.message).toMatch(
      /^100\.0% of interactions \([\d,]+ rows\) have 5 item ids unknown to version v1, above 10\.0%; e\.g\. "item-i1" \(5,000\), "item-i2" \(3,000\), "item-i3" \(2,000\)$/,
    );
    expect(r.anomalies[1]!.value).toBeCloseTo(1, 6);
    expect(r.summary).toMatch(/^FAIL: 2 anomalies \(unseenItems, popularityShift\); /);
  });

  test('ids off by one (no unseen id of note) still fail on the popularity shift', () => {
    const items = { i2: 5000, i3: 3000, i4: 2000, i5: 1000, i6: 500 };
    const r = detectAnomalies(
      stats({ daily: steady(14), items, users: prev.userCounts }),
      { version: 'v1', stats: prev },
      cfg(),
    );
    expect(r.anomalies.map((a) => a.check)).toContain('popularityShift');
    const shift = r.anomalies.find((a) => a.check === 'popularityShift')!;
    expect(shift.message).toMatch(
      /^item popularity shifted from version v1: jensen-shannon 0\.277 > 0\.100 \(threshold 0\.1 \+ 0\.000 for sample size; .*item "i1" 43\.5% -> 0\.0%\)$/,
    );
    expect(r.metrics['unseenItems.share']).toBeCloseTo(500 / 11_500, 6);
  });

  test('the popularity check can use L-infinity instead', () => {
    const items = { i1: 4000, i2: 4000, i3: 2000, i4: 1000, i5: 500 };
    const s = stats({ daily: steady(14), items, users: prev.userCounts });
    const js = detectAnomalies(s, { version: 'v1', stats: prev }, cfg());
    expect(js.anomalies).toEqual([]);
    const linf = detectAnomalies(
      s,
      { version: 'v1', stats: prev },
      cfg({ popularityShift: { metric: 'l-infinity', threshold: 0.05 } }),
    );
    expect(checks(linf.anomalies)).toEqual(['fail:popularityShift']);
    expect(linf.anomalies[0]!.value).toBeCloseTo(1000 / 11_500, 6);
  });

  test('unseen rating values fail; unseen users and an activity shift only warn by default', () => {
    const users = { u1: 1, u2: 1, u9: 3, u8: 2, u7: 1 };
    const s = stats({ daily: steady(14), items: prev.itemCounts, users, ratings: { '0': 10, '1': 100, '5': 100 } });
    const r = detectAnomalies(s, { version: 'v1', stats: prev }, cfg());
    expect(checks(r.anomalies)).toEqual(['warn:unseenUsers', 'fail:unseenRatings', 'warn:userActivityShift']);
    expect(r.anomalies[1]!.message).toContain('have 1 rating values unknown to version v1');
    expect(r.anomalies[1]!.message).toContain('"0" (10)');
    expect(r.status).toBe('fail');
    expect(r.summary).toMatch(
      /^FAIL: 1 anomaly \(unseenRatings\); .*; 2 warnings \(unseenUsers, userActivityShift\); vs v1$/,
    );
  });

  test('warnings alone make the status warn; severity off removes the check', () => {
    const users = { u1: 1, u2: 1, u9: 3, u8: 2, u7: 1 };
    const s = stats({ daily: steady(14), items: prev.itemCounts, users });
    const r = detectAnomalies(s, { version: 'v1', stats: prev }, cfg());
    expect(r.status).toBe('warn');
    expect(r.summary).toMatch(/^WARN: 2 warnings \(unseenUsers, userActivityShift\); /);
    const off = detectAnomalies(
      s,
      { version: 'v1', stats: prev },
      cfg({ unseenUsers: { severity: 'off' }, userActivityShift: { severity: 'off' } }),
    );
    expect(off.status).toBe('pass');
    expect(off.skipped).toEqual([
      { check: 'unseenUsers', reason: 'severity off' },
      { check: 'userActivityShift', reason: 'severity off' },
    ]);
  });

  test('a break confined to the rows newer than the previous version is judged on those rows alone', () => {
    const fresh = { 'item-i1': 500, 'item-i2': 300, 'item-i3': 200 };
    const items = { ...prev.itemCounts, ...fresh };
    const whole = stats({ daily: steady(15), items, users: prev.userCounts });
    const newRows = stats({ daily: [1000], firstDay: DAY0 + 14, items: fresh, users: { u1: 1000 } });
    const diluted = detectAnomalies(whole, { version: 'v1', stats: prev }, cfg());
    expect(diluted.anomalies.filter((a) => a.severity === 'fail')).toEqual([]);
    const r = detectAnomalies(whole, { version: 'v1', stats: prev }, cfg(), newRows);
    expect(checks(r.anomalies)).toEqual(['fail:unseenItems', 'fail:popularityShift']);
    expect(r.anomalies[0]!.message).toMatch(
      /^100\.0% of the 1,000 interactions newer than version v1 \(1,000 rows\) have 3 item ids unknown to version v1, above 30\.0%; /,
    );
    expect(r.anomalies[0]!.threshold).toBe(0.3);
    expect(r.anomalies[1]!.message).toMatch(/^item popularity in the 1,000 interactions newer than version v1 shifted/);
    expect(r.metrics['unseenItems.new.share']).toBe(1);
    expect(r.metrics['unseenItems.share']).toBeCloseTo(1000 / 12_500, 6);
  });

  test('benign new rows from the same distribution pass', () => {
    const newRows = stats({
      daily: [1150],
      firstDay: DAY0 + 14,
      items: { i1: 500, i2: 300, i3: 200, i4: 100, i5: 50 },
    });
    const r = detectAnomalies(
      stats({ daily: steady(15), items: prev.itemCounts, users: prev.userCounts }),
      { version: 'v1', stats: prev },
      cfg(),
      newRows,
    );
    expect(r.anomalies).toEqual([]);
    expect(r.metrics['popularityShift.new.jensenShannon']).toBeLessThan(0.001);
  });

  test('a column that changed type fails the schema check naming file and column', () => {
    const schema = { ...SCHEMA, 'train.parquet': { ...SCHEMA['train.parquet'], rating: 'DOUBLE', extra: 'VARCHAR' } };
    const r = detectAnomalies(
      stats({ daily: steady(14), schema, items: prev.itemCounts, users: prev.userCounts }),
      { version: 'v1', stats: prev },
      cfg(),
    );
    expect(checks(r.anomalies)).toEqual(['fail:schemaChange']);
    expect(r.anomalies[0]!.message).toBe(
      'train.parquet: column rating changed type FLOAT -> DOUBLE; column extra (VARCHAR) added (compared with version v1)',
    );
  });
});

test('distances: identical distributions are 0 apart, disjoint ones 1 (Jensen-Shannon, base 2)', () => {
  expect(distances({ a: 1, b: 3 }, { a: 10, b: 30 })).toMatchObject({ jensenShannon: 0, lInfinity: 0 });
  const d = distances({ a: 1 }, { b: 1 });
  expect(d.jensenShannon).toBeCloseTo(1, 12);
  expect(d.lInfinity).toBe(1);
  const half = distances({ a: 1, b: 1 }, { a: 1 });
  expect(half.lInfinity).toBeCloseTo(0.5, 12);
  expect(half.largest?.key).toBe('a');
  expect(half.jensenShannon).toBeGreaterThan(0);
  expect(half.jensenShannon).toBeLessThan(1);
});

test('the sampling allowance shrinks with the sample sizes, so small samples do not raise false alarms', () => {
  const ref = { a: 50, b: 30, c: 20 };
  const small = samplingAllowance('jensen-shannon', ref, ref, 100, 20);
  const large = samplingAllowance('jensen-shannon', ref, ref, 100_000, 20_000);
  expect(small).toBeCloseTo((2 * (1 / 100 + 1 / 20)) / (8 * Math.LN2), 12);
  expect(large).toBeCloseTo(small / 1000, 12);
  expect(samplingAllowance('l-infinity', ref, ref, 100, 100)).toBeCloseTo(3 * Math.sqrt(0.5 * 0.5 * 0.02), 12);
  expect(samplingAllowance('jensen-shannon', ref, ref, 0, 10)).toBe(Infinity);
});

test('summaries name every failing check once and count warnings', () => {
  const a = (check: Anomaly['check'], severity: Anomaly['severity']): Anomaly => ({
    check,
    severity,
    message: `${check} message`,
    value: 1,
    threshold: 0,
  });
  expect(summarise([a('dailyVolumeDip', 'fail'), a('dailyVolumeDip', 'fail'), a('unseenItems', 'fail')], 'v3')).toEqual(
    {
      status: 'fail',
      summary: 'FAIL: 3 anomalies (dailyVolumeDip, unseenItems); dailyVolumeDip message; vs v3',
    },
  );
  expect(summarise([a('unseenUsers', 'warn')]).summary).toBe(
    'WARN: 1 warning (unseenUsers); unseenUsers message; first version',
  );
});
