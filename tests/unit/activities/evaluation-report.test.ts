/**
 * parseEvaluationReport and summarise on hand-made reports shaped like models/evaluate.py's: recent and all-time
 * popularity, warm and cold users apart. The real report is checked end to end by the integration tests.
 */
import { EvaluationReportError, parseEvaluationReport, summarise } from '../../../activities/evaluation';

const METRICS = ['ndcg@10', 'mrr'];
const iv = (point: number) => ({ point, lo: point - 0.01, hi: point + 0.01 });
const diff = (point: number) => ({ ...iv(point), rel_point: null, rel_lo: null, rel_hi: null });

/** A population whose rankers score `base` plus a per-ranker offset on every metric. */
function pop(nUsers: number, base: number) {
  const metrics = (x: number) => Object.fromEntries(METRICS.map((m) => [m, iv(x)]));
  if (nUsers === 0) return { n_users: 0, small: true, intervals: {}, differences: {} };
  return {
    n_users: nUsers,
    small: false,
    intervals: { model: metrics(base + 0.2), popularity: metrics(base + 0.1), popularity_all_time: metrics(base) },
    differences: { vs_popularity: Object.fromEntries(METRICS.map((m) => [m, diff(0.1)])) },
  };
}

function report(): Record<string, unknown> {
  const point = (x: number) => Object.fromEntries(METRICS.map((m) => [m, x]));
  return {
    k: 10,
    ks: [10],
    rankers: ['model', 'popularity', 'popularity_all_time'],
    metric_names: METRICS,
    n_users: 5,
    n_cold_users: 2,
    protocol: 'time',
    popularity_days: 14,
    metrics: { model: point(0.5), popularity: point(0.4), popularity_all_time: point(0.3) },
    overall: pop(5, 0.3),
    populations: { warm: pop(3, 0.2), cold: pop(2, 0.45) },
    slices: { 'activity=cold': { ...pop(2, 0.45), dimension: 'activity', value: 'cold' } },
    coverage: { model: 0.5, popularity: 0.1, popularity_all_time: 0.1 },
    novelty: { model: 9, popularity: 7, popularity_all_time: 6.5 },
    bootstrap: { n_resamples: 100, confidence: 0.95, seed: 0 },
  };
}

test('the summary carries recent popularity, all-time popularity and the warm and cold populations', () => {
  const summary = summarise(parseEvaluationReport(report(), 'r.json'), { reportUri: 'r', tableUri: 't' });
  expect(summary.popularityDays).toBe(14);
  expect(summary.protocol).toBe('time');
  expect(summary.popularity['ndcg@10']).toBe(0.4);
  expect(summary.popularityAllTime?.['ndcg@10']).toBe(0.3);
  expect(summary.populations?.warm.nUsers).toBe(3);
  expect(summary.populations?.warm.model['ndcg@10']?.point).toBeCloseTo(0.4, 12);
  expect(summary.populations?.warm.vsPopularity['ndcg@10']?.point).toBe(0.1);
  expect(summary.populations?.cold.nUsers).toBe(2);
  expect(summary.slices['activity=cold']).toMatchObject({ dimension: 'activity', value: 'cold', nUsers: 2 });
});

test('an empty population is allowed; a missing one or a missing ranker is named', () => {
  const empty = report();
  empty.populations = { warm: pop(3, 0.2), cold: pop(0, 0) };
  expect(parseEvaluationReport(empty, 'r.json').populations.cold.n_users).toBe(0);

  const missing = report();
  delete missing.populations;
  expect(() => parseEvaluationReport(missing, 'r.json')).toThrow(EvaluationReportError);
  expect(() => parseEvaluationReport(missing, 'r.json')).toThrow(/r\.json.*populations/);

  const noAllTime = report();
  const warm = pop(3, 0.2) as { intervals: Record<string, unknown> };
  delete warm.intervals.popularity_all_time;
  noAllTime.populations = { warm, cold: pop(2, 0.45) };
  expect(() => parseEvaluationReport(noAllTime, 'r.json')).toThrow(
    'r.json: populations.warm.intervals.popularity_all_time has no ndcg@10',
  );
});
