/**
 * Anomaly detection for a dataset version (TFX Data Validation style): a pure comparison of the version's statistics
 * with those of the previous validated version (drift comparators: L-infinity / Jensen-Shannon over categorical
 * distributions with a sample-size allowance, unseen categories, volume per version and per day, schema, daily
 * volume dips of the new days against their neighbours) plus a check within the version alone (timestamp gaps where
 * data was dense). The first version of a dataset gets only the latter: there is nothing to compare it with.
 * No I/O, so every rule is unit-testable.
 */
import { DAY_S, dayLabel, hourLabel, type DatasetStatistics } from './statistics';
import type { CheckName, DistanceMetric, ValidationConfig } from './validation-config';

export type ValidationStatus = 'pass' | 'warn' | 'fail';

export interface Anomaly {
  /** The check (its key in the validation config). */
  check: CheckName;
  severity: 'warn' | 'fail';
  /** What and where, e.g. "daily volume on 1998-03-02 is 412 rows, 48% of the median of the days around it (860)". */
  message: string;
  /** The measured value the threshold was applied to. */
  value: number;
  threshold: number;
}

export interface ValidationReport {
  status: ValidationStatus;
  anomalies: Anomaly[];
  previousVersion?: string;
  /** Checks that ran, and those that could not (with why), so a pass is never silent about what it skipped. */
  checked: CheckName[];
  skipped: { check: CheckName; reason: string }[];
  /** The measured comparisons, anomalous or not (distances, unseen shares, volume ratio). */
  metrics: Record<string, number>;
  /** One line for the Web UI. */
  summary: string;
}

export interface PreviousVersion {
  version: string;
  stats: DatasetStatistics;
}

/** At most this many anomalies per check (the worst first); the last one says how many more there were. */
export const MAX_PER_CHECK = 5;

const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 && x > 0 ? 2 : 1)}%`;
const int = (x: number) => Math.round(x).toLocaleString('en-US');
const num = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

function median(sorted: number[]): number {
  const n = sorted.length;
  if (n === 0) return 0;
  return n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
}

const normalise = (counts: Record<string, number>): Map<string, number> => {
  let total = 0;
  for (const c of Object.values(counts)) total += c;
  return new Map(Object.entries(counts).map(([k, c]) => [k, total > 0 ? c / total : 0]));
};

/** Distances between two categorical distributions given as counts; also the key that moved most. */
export function distances(
  a: Record<string, number>,
  b: Record<string, number>,
): { jensenShannon: number; lInfinity: number; largest?: { key: string; a: number; b: number } } {
  const p = normalise(a);
  const q = normalise(b);
  let js = 0;
  let lInf = 0;
  let largest: { key: string; a: number; b: number } | undefined;
  for (const key of new Set([...p.keys(), ...q.keys()])) {
    const x = p.get(key) ?? 0;
    const y = q.get(key) ?? 0;
    const m = (x + y) / 2;
    if (x > 0) js += 0.5 * x * Math.log2(x / m);
    if (y > 0) js += 0.5 * y * Math.log2(y / m);
    const d = Math.abs(x - y);
    if (d > lInf) {
      lInf = d;
      largest = { key, a: x, b: y };
    }
  }
  // Rounding can leave a tiny negative or > 1 value; the divergence (base 2) lies in [0, 1].
  return { jensenShannon: Math.min(1, Math.max(0, js)), lInfinity: lInf, ...(largest ? { largest } : {}) };
}

const metricValue = (d: ReturnType<typeof distances>, metric: DistanceMetric) =>
  metric === 'jensen-shannon' ? d.jensenShannon : d.lInfinity;

type Emit = (check: CheckName, value: number, threshold: number, message: string) => void;

function capped<T>(items: T[], check: CheckName, emit: (x: T, suffix: string) => void): void {
  items.slice(0, MAX_PER_CHECK).forEach((x, i) => {
    const more = items.length - MAX_PER_CHECK;
    emit(x, i === MAX_PER_CHECK - 1 && more > 0 ? ` (and ${more} more ${check} anomalies)` : '');
  });
}

function checkDailyVolumeDip(cur: DatasetStatistics, prev: DatasetStatistics, c: ValidationConfig, emit: Emit) {
  const cfg = c.dailyVolumeDip;
  const { firstDay, counts } = cur.dailyVolume;
  const found: { day: number; count: number; med: number; ratio: number; z: number }[] = [];
  // The first and last day are partial (the log starts and ends mid-day): neither judged nor used as neighbours.
  // Only days after the previous version's last day are judged: earlier days were accepted with the previous version
  // (and a loss there is dailyVolumeDrop's to report). Judging a whole history day by day would also multiply the
  // chances of a false alarm in bursty logs.
  const lastJudged = prev.dailyVolume.firstDay + prev.dailyVolume.counts.length - 1;
  for (let i = Math.max(1, lastJudged + 1 - firstDay); i < counts.length - 1; i++) {
    const count = counts[i]!;
    const neighbours: number[] = [];
    for (let j = Math.max(1, i - cfg.windowDays); j <= Math.min(counts.length - 2, i + cfg.windowDays); j++)
      if (j !== i) neighbours.push(counts[j]!);
    neighbours.sort((a, b) => a - b);
    const med = median(neighbours);
    if (neighbours.length === 0 || med < cfg.minMedianRows || med === 0) continue;
    const ratio = count / med;
    if (ratio >= cfg.minRatio) continue;
    const mad = median(neighbours.map((x) => Math.abs(x - med)).sort((a, b) => a - b));
    const z = mad > 0 ? (med - count) / (1.4826 * mad) : Infinity;
    if (z <= cfg.minRobustZ) continue;
    found.push({ day: firstDay + i, count, med, ratio, z });
  }
  found.sort((a, b) => a.ratio - b.ratio);
  capped(found, 'dailyVolumeDip', (f, more) =>
    emit(
      'dailyVolumeDip',
      f.ratio,
      cfg.minRatio,
      `daily volume on ${dayLabel(f.day)} is ${int(f.count)} rows, ${pct(f.ratio)} of the median of the ` +
        `${cfg.windowDays} days on each side (${int(f.med)}; ${Number.isFinite(f.z) ? `${f.z.toFixed(1)} robust sd below` : 'the neighbours are all equal'})${more}`,
    ),
  );
}

function checkTimestampGap(
  cur: DatasetStatistics,
  prev: DatasetStatistics | undefined,
  c: ValidationConfig,
  emit: Emit,
) {
  const cfg = c.timestampGap;
  const accepted = new Set((prev?.gaps ?? []).map((g) => `${g.from}-${g.to}`));
  const { firstDay, counts } = cur.dailyVolume;
  const found: { gap: (typeof cur.gaps)[number]; perDay: number; missing: number }[] = [];
  for (const gap of cur.gaps) {
    if (gap.hours <= cfg.maxHours || accepted.has(`${gap.from}-${gap.to}`)) continue;
    // The level of the log around the gap: median volume of the days before its start and after its end.
    const startDay = Math.floor(gap.from / DAY_S) - firstDay;
    const endDay = Math.floor(gap.to / DAY_S) - firstDay;
    const around = [
      ...counts.slice(Math.max(0, startDay - cfg.windowDays), startDay + 1),
      ...counts.slice(endDay, endDay + cfg.windowDays + 1),
    ].sort((a, b) => a - b);
    const perDay = median(around);
    const missing = (perDay * gap.hours) / 24;
    if (missing >= cfg.minMissingRows) found.push({ gap, perDay, missing });
  }
  capped(found, 'timestampGap', ({ gap: g, perDay, missing }, more) =>
    emit(
      'timestampGap',
      g.hours,
      cfg.maxHours,
      `no interactions for ${int(g.hours)} h (${(g.hours / 24).toFixed(1)} days) between ${hourLabel(g.from)} and ` +
        `${hourLabel(g.to)} UTC, longer than ${cfg.maxHours} h; the days around it have a median of ${int(perDay)} ` +
        `rows, so about ${int(missing)} rows are missing${more}`,
    ),
  );
}

function checkSchema(cur: DatasetStatistics, prev: DatasetStatistics, prevVersion: string, emit: Emit) {
  for (const file of [...new Set([...Object.keys(prev.schema), ...Object.keys(cur.schema)])].sort()) {
    const a = prev.schema[file];
    const b = cur.schema[file];
    const changes: string[] = [];
    if (!b) changes.push('the file is missing');
    else if (!a) changes.push('the file is new');
    else {
      for (const [col, type] of Object.entries(a)) {
        if (!(col in b)) changes.push(`column ${col} (${type}) removed`);
        else if (b[col] !== type) changes.push(`column ${col} changed type ${type} -> ${b[col]}`);
      }
      for (const [col, type] of Object.entries(b)) if (!(col in a)) changes.push(`column ${col} (${type}) added`);
    }
    if (changes.length > 0)
      emit('schemaChange', changes.length, 0, `${file}: ${changes.join('; ')} (compared with version ${prevVersion})`);
  }
}

function unseenShare(cur: Record<string, number>, prev: Record<string, number>) {
  let rows = 0;
  let total = 0;
  const ids: [string, number][] = [];
  for (const [id, c] of Object.entries(cur)) {
    total += c;
    if (!(id in prev)) {
      rows += c;
      ids.push([id, c]);
    }
  }
  ids.sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1));
  return { share: total > 0 ? rows / total : 0, rows, ids };
}

/** Which rows a comparison looked at: the whole version, or only its rows newer than the previous version. */
interface Scope {
  key: '' | 'new.';
  stats: DatasetStatistics;
  /** How messages name the rows, e.g. "of interactions" or "of the 50,000 interactions newer than version v1". */
  of: string;
}

function checkUnseen(
  check: 'unseenItems' | 'unseenUsers' | 'unseenRatings',
  what: string,
  pick: (s: DatasetStatistics) => Record<string, number>,
  scopes: Scope[],
  prev: DatasetStatistics,
  prevVersion: string,
  maxShare: (scope: Scope) => number,
  metrics: Record<string, number>,
  emit: Emit,
) {
  // One anomaly per check: the scope where the unseen share is largest (the new rows show a fresh break undiluted).
  let worst: { scope: Scope; u: ReturnType<typeof unseenShare>; limit: number } | undefined;
  for (const scope of scopes) {
    const u = unseenShare(pick(scope.stats), pick(prev));
    const limit = maxShare(scope);
    metrics[`${check}.${scope.key}share`] = u.share;
    if (u.share > limit && u.rows > 0 && (!worst || u.share - limit > worst.u.share - worst.limit))
      worst = { scope, u, limit };
  }
  if (!worst) return;
  const { scope, u, limit } = worst;
  const examples = u.ids
    .slice(0, 3)
    .map(([id, c]) => `${JSON.stringify(id)} (${int(c)})`)
    .join(', ');
  emit(
    check,
    u.share,
    limit,
    `${pct(u.share)} ${scope.of} (${int(u.rows)} rows) have ${int(u.ids.length)} ${what} unknown to version ` +
      `${prevVersion}, above ${pct(limit)}; e.g. ${examples}`,
  );
}

/**
 * How far two samples of one distribution drift apart by chance, added to a threshold so that small samples do not
 * raise false alarms: E[JS] ~ (k - 1)(1/n1 + 1/n2) / (8 ln 2) bits for k categories; for L-infinity, three standard
 * deviations of the most common category's share.
 */
export function samplingAllowance(
  metric: DistanceMetric,
  reference: Record<string, number>,
  sample: Record<string, number>,
  n1: number,
  n2: number,
): number {
  if (n1 <= 0 || n2 <= 0) return Infinity;
  const inv = 1 / n1 + 1 / n2;
  if (metric === 'jensen-shannon') {
    const k = new Set([...Object.keys(reference), ...Object.keys(sample)]).size;
    return (Math.max(0, k - 1) * inv) / (8 * Math.LN2);
  }
  const pMax = Math.max(0, ...Object.values(reference)) / n1;
  return 3 * Math.sqrt(pMax * (1 - pMax) * inv);
}

function checkShift(
  check: 'popularityShift' | 'userActivityShift',
  what: (key: string) => string,
  pick: (s: DatasetStatistics) => Record<string, number>,
  total: (s: DatasetStatistics) => number,
  scopes: Scope[],
  prev: DatasetStatistics,
  prevVersion: string,
  c: { metric: DistanceMetric; threshold: number; newRowsThreshold?: number },
  metrics: Record<string, number>,
  emit: Emit,
) {
  let worst:
    { scope: Scope; d: ReturnType<typeof distances>; value: number; limit: number; threshold: number } | undefined;
  for (const scope of scopes) {
    const d = distances(pick(prev), pick(scope.stats));
    metrics[`${check}.${scope.key}jensenShannon`] = d.jensenShannon;
    metrics[`${check}.${scope.key}lInfinity`] = d.lInfinity;
    const threshold = scope.key === 'new.' ? (c.newRowsThreshold ?? c.threshold) : c.threshold;
    const limit =
      threshold + samplingAllowance(c.metric, pick(prev), pick(scope.stats), total(prev), total(scope.stats));
    const value = metricValue(d, c.metric);
    if (value > limit && (!worst || value - limit > worst.value - worst.limit))
      worst = { scope, d, value, limit, threshold };
  }
  if (!worst) return;
  const { scope, d, value, limit, threshold } = worst;
  const allowance = limit - threshold;
  emit(
    check,
    value,
    limit,
    `${what('')} ${scope.key === '' ? '' : `in the ${scope.of.replace(/^of the /, '')} `}shifted from version ` +
      `${prevVersion}: ${c.metric} ${num(value)} > ${num(limit)} (threshold ${threshold} + ${num(allowance)} for ` +
      `sample size; Jensen-Shannon ${num(d.jensenShannon)}, L-infinity ${num(d.lInfinity)}` +
      (d.largest ? `; ${what(d.largest.key)} ${pct(d.largest.a)} -> ${pct(d.largest.b)}` : '') +
      ')',
  );
}

/** Status and the one-line summary of a list of anomalies. */
export function summarise(
  anomalies: Anomaly[],
  previousVersion?: string,
): { status: ValidationStatus; summary: string } {
  const fails = anomalies.filter((a) => a.severity === 'fail');
  const warns = anomalies.filter((a) => a.severity === 'warn');
  const names = (xs: Anomaly[]) => [...new Set(xs.map((a) => a.check))].join(', ');
  const against = previousVersion ? `vs ${previousVersion}` : 'first version';
  const warnPart =
    warns.length > 0 ? `${warns.length} warning${warns.length > 1 ? 's' : ''} (${names(warns)})` : undefined;
  if (fails.length > 0) {
    const head = `FAIL: ${fails.length} anomal${fails.length > 1 ? 'ies' : 'y'} (${names(fails)})`;
    return {
      status: 'fail',
      summary: [head, fails[0]!.message, warnPart, against].filter((x) => x !== undefined).join('; '),
    };
  }
  if (warns.length > 0) return { status: 'warn', summary: `WARN: ${warnPart}; ${warns[0]!.message}; ${against}` };
  return { status: 'pass', summary: `PASS: no anomalies (${against})` };
}

/**
 * Compares a version's statistics with the previous validated version's (none for the first version) under `cfg`.
 * Checks whose severity is `off` do not run. `newRows` are the statistics of the version's rows newer than the previous
 * version's last timestamp: a version that extends the previous one dilutes a break in its new rows (a broken id
 * mapping in this week's export), so popularity, unseen items and unseen ratings are also judged on them alone.
 */
export function detectAnomalies(
  current: DatasetStatistics,
  previous: PreviousVersion | undefined,
  cfg: ValidationConfig,
  newRows?: DatasetStatistics,
): ValidationReport {
  const anomalies: Anomaly[] = [];
  const checked: CheckName[] = [];
  const skipped: ValidationReport['skipped'] = [];
  const metrics: Record<string, number> = {};
  const emit: Emit = (check, value, threshold, message) => {
    const severity = cfg[check].severity;
    if (severity !== 'off') anomalies.push({ check, severity, message, value, threshold });
  };
  const run = (check: CheckName, needsPrevious: boolean, body: () => void) => {
    if (cfg[check].severity === 'off') return skipped.push({ check, reason: 'severity off' });
    if (needsPrevious && !previous) return skipped.push({ check, reason: 'no previous validated version' });
    checked.push(check);
    body();
  };
  const prev = previous?.stats;
  const pv = previous?.version ?? '';

  run('schemaChange', true, () => checkSchema(current, prev!, pv, emit));
  run('volumeDrop', true, () => {
    const drop = prev!.rows > 0 ? 1 - current.rows / prev!.rows : 0;
    metrics['volumeDrop.drop'] = drop;
    if (drop > cfg.volumeDrop.maxDrop)
      emit(
        'volumeDrop',
        drop,
        cfg.volumeDrop.maxDrop,
        `${int(current.rows)} interactions, ${pct(drop)} fewer than version ${pv} (${int(prev!.rows)}); at most ` +
          `${pct(cfg.volumeDrop.maxDrop)} allowed`,
      );
  });
  run('dailyVolumeDrop', true, () => {
    const c = cfg.dailyVolumeDrop;
    const found: { day: number; before: number; now: number; drop: number }[] = [];
    prev!.dailyVolume.counts.forEach((before, i) => {
      const day = prev!.dailyVolume.firstDay + i;
      const now = current.dailyVolume.counts[day - current.dailyVolume.firstDay] ?? 0;
      const drop = before > 0 ? 1 - now / before : 0;
      if (before >= c.minRows && drop > c.maxDrop) found.push({ day, before, now, drop });
    });
    found.sort((a, b) => b.drop - a.drop);
    capped(found, 'dailyVolumeDrop', (f, more) =>
      emit(
        'dailyVolumeDrop',
        f.drop,
        c.maxDrop,
        `daily volume on ${dayLabel(f.day)} is ${int(f.now)} rows, ${pct(f.now / f.before)} of what version ${pv} ` +
          `had for that day (${int(f.before)})${more}`,
      ),
    );
  });
  run('dailyVolumeDip', true, () => checkDailyVolumeDip(current, prev!, cfg, emit));
  run('timestampGap', false, () => checkTimestampGap(current, prev, cfg, emit));
  const whole: Scope = { key: '', stats: current, of: 'of interactions' };
  const scopes: Scope[] = [whole];
  if (newRows && newRows.rows > 0)
    scopes.push({
      key: 'new.',
      stats: newRows,
      of: `of the ${int(newRows.rows)} interactions newer than version ${pv}`,
    });
  const items = (s: DatasetStatistics) => s.itemCounts;
  run('unseenItems', true, () =>
    checkUnseen(
      'unseenItems',
      'item ids',
      items,
      scopes,
      prev!,
      pv,
      (scope) => (scope.key === 'new.' ? cfg.unseenItems.newRowsMaxShare : cfg.unseenItems.maxShare),
      metrics,
      emit,
    ),
  );
  run('unseenUsers', true, () =>
    checkUnseen(
      'unseenUsers',
      'user ids',
      (s) => s.userCounts,
      [whole],
      prev!,
      pv,
      () => cfg.unseenUsers.maxShare,
      metrics,
      emit,
    ),
  );
  run('unseenRatings', true, () =>
    checkUnseen(
      'unseenRatings',
      'rating values',
      (s) => s.ratings,
      scopes,
      prev!,
      pv,
      () => cfg.unseenRatings.maxShare,
      metrics,
      emit,
    ),
  );
  run('popularityShift', true, () =>
    checkShift(
      'popularityShift',
      (key) => (key === '' ? 'item popularity' : `item ${JSON.stringify(key)}`),
      items,
      (s) => s.rows,
      scopes,
      prev!,
      pv,
      cfg.popularityShift,
      metrics,
      emit,
    ),
  );
  // Activity is a property of whole histories: the users of one new week always look less active than of three years.
  run('userActivityShift', true, () =>
    checkShift(
      'userActivityShift',
      (key) => (key === '' ? 'interactions per user' : `users with ${key} interactions`),
      (s) => s.userActivity,
      (s) => s.users,
      [whole],
      prev!,
      pv,
      cfg.userActivityShift,
      metrics,
      emit,
    ),
  );

  const { status, summary } = summarise(anomalies, previous?.version);
  return {
    status,
    anomalies,
    ...(previous ? { previousVersion: previous.version } : {}),
    checked,
    skipped,
    metrics,
    summary,
  };
}

/** A short plain-text rendering of a report (the artefact next to validation.json). */
export function reportText(name: string, version: string, report: ValidationReport): string {
  const lines = [
    `Data validation of ${name} version ${version}: ${report.status.toUpperCase()}`,
    report.previousVersion ? `Compared with version ${report.previousVersion}` : 'First validated version',
    '',
    report.summary,
    '',
    ...report.anomalies.map((a) => `- [${a.severity}] ${a.check}: ${a.message}`),
    ...(report.anomalies.length === 0 ? ['No anomalies.'] : []),
    '',
    `Checked: ${report.checked.join(', ') || '(none)'}`,
    ...report.skipped.map((s) => `Skipped ${s.check}: ${s.reason}`),
    ...Object.entries(report.metrics).map(([k, v]) => `${k} = ${num(v)}`),
  ];
  return lines.join('\n') + '\n';
}
