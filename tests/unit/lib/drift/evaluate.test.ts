import { parseDriftConfig, type DriftConfigInput } from '../../../../lib/drift/config';
import { evaluateWindow, type WindowVerdict } from '../../../../lib/drift/evaluate';
import { mergeCounts, SIGNALS, type SignalName, type WindowSummary } from '../../../../lib/drift/summary';
import { referenceTraffic, sampleWindow, seeded, shifted, type Rng, type ShiftKind, type Traffic } from './traffic';

const config = (input: DriftConfigInput = {}) => parseDriftConfig(input);
const base = referenceTraffic();

/** The merged counts of three baseline windows of `t`, drawn exactly. */
const baseline = (rng: Rng, t: Traffic, requests: number) =>
  mergeCounts([0, 1, 2].map(() => sampleWindow(rng, t, requests, { exact: true })));

const judge = (
  reference: Record<SignalName, number[]>,
  current: WindowSummary,
  input: DriftConfigInput = {},
  history: WindowVerdict[] = [],
) => evaluateWindow({ reference, current, config: config(input), history });

const signal = (v: WindowVerdict, name: SignalName) => v.signals.find((s) => s.name === name)!;

describe('no drift, at any sample size (evidently#50: tests that flag everything on large samples)', () => {
  // One history item and one recommended item per request keep the exact draws of a million requests fast.
  const lean: Traffic = { ...base, historyItems: 1, recommended: 1 };

  test.each([
    [1_000, 50],
    [10_000, 10],
    [100_000, 3],
    [1_000_000, 2],
  ])('identical distributions at %d requests never breach (%d seeded windows)', (requests, seeds) => {
    let largestJs = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const rng = seeded(seed * 7919 + requests);
      const reference = baseline(rng, lean, requests);
      const v = judge(reference, sampleWindow(rng, lean, requests, { exact: true }));
      expect(v.status).toBe('ok');
      expect(v.breached).toEqual([]);
      expect(v.alerts).toEqual([]);
      expect(v.signals).toHaveLength(SIGNALS.length);
      for (const s of v.signals) {
        expect(s.insufficient).toBeUndefined();
        expect(s.breached).toBe(false);
        if (s.metric === 'jensen-shannon') largestJs = Math.max(largestJs, s.value!);
      }
    }
    // The effect size shrinks as the sample grows; it never climbs toward a threshold.
    expect(largestJs).toBeLessThan(requests >= 100_000 ? 1e-4 : 0.01);
  });

  test('a real but negligible change at 1M requests is significant and still no breach', () => {
    const rng = seeded(50);
    const reference = baseline(rng, lean, 1_000_000);
    const tiny = shifted(shifted(lean, 'ctr-drop', 0.05), 'popularity', 0.02);
    const v = judge(reference, sampleWindow(rng, tiny, 1_000_000, { exact: true }));
    for (const name of ['ctr', 'recommended-popularity'] as const) {
      expect(signal(v, name)).toMatchObject({ significant: true, breached: false });
      expect(signal(v, name).pValue).toBeLessThan(1e-6);
    }
    expect(signal(v, 'ctr').value).toBeCloseTo(0.05, 1);
    expect(v.status).toBe('ok');
  });
});

describe('a real shift breaches its signals', () => {
  const rng = seeded(2024);
  const reference = baseline(rng, base, 10_000);

  test.each<[ShiftKind, number, SignalName[]]>([
    ['popularity', 0.4, ['recommended-popularity']],
    ['popularity', 0.7, ['requested-popularity', 'recommended-popularity']],
    ['user-mix', 0.4, ['user-unknown', 'history-length']],
    ['new-items', 0.3, ['feedback-new-items']],
    ['ctr-drop', 0.4, ['ctr']],
    ['score', 0.4, ['score-top1', 'score-mean']],
  ])('%s shifted by %d breaches %j', (kind, size, expected) => {
    const v = judge(reference, sampleWindow(rng, shifted(base, kind, size), 10_000, { exact: true }));
    expect(v.breached).toEqual(expected);
    expect(v.status).toBe('warning');
    expect(v.confirmed).toEqual([]);
    for (const name of expected) {
      const s = signal(v, name);
      expect(s.value!).toBeGreaterThanOrEqual(s.limit!);
      expect(s.pValue!).toBeLessThan(0.01 / SIGNALS.length);
      expect(v.reason).toContain(name);
    }
    expect(v.reason).toContain(`1 of 1, 3 needed`);
  });

  test('the popularity signals report the long-tail share, the score signals the mean and Wasserstein', () => {
    const v = judge(reference, sampleWindow(rng, shifted(shifted(base, 'popularity', 0.4), 'score', 0.4), 10_000));
    const pop = signal(v, 'recommended-popularity').detail;
    expect(pop.longTailBefore!).toBeLessThan(0.1);
    expect(pop.longTailAfter!).toBeGreaterThan(0.4);
    const top1 = signal(v, 'score-top1').detail;
    expect(top1.meanBefore!).toBeCloseTo(4, 0);
    expect(top1.meanAfter!).toBeCloseTo(2.4, 0);
    // The mean moved by 1.6 = 2 standard deviations of 0.8 (coarser in log-scale bins).
    expect(top1.wasserstein!).toBeGreaterThan(1.5);
    expect(top1.wasserstein!).toBeLessThan(2.5);
  });

  test('a CTR rise is not drift', () => {
    const up: Traffic = { ...base, p: { ...base.p, ctr: [0.8, 0.2] } };
    const v = judge(reference, sampleWindow(rng, up, 10_000));
    expect(signal(v, 'ctr').value!).toBeLessThan(0);
    expect(signal(v, 'ctr').pValue!).toBeGreaterThan(0.5);
    expect(v.status).toBe('ok');
  });

  test('fallback answers are an alert, never a retrain reason', () => {
    const failing: Traffic = { ...base, p: { ...base.p, fallback: [0.8, 0.2] } };
    const v = judge(reference, sampleWindow(rng, failing, 10_000));
    expect(v.alerts).toEqual(['fallback']);
    expect(v.breached).toEqual([]);
    expect(v.status).toBe('warning');
    expect(signal(v, 'fallback').role).toBe('alert');
    // Even breached in every window, an alert signal confirms nothing.
    const history = [1, 2, 3].map(() => judge(reference, sampleWindow(rng, failing, 10_000)));
    expect(judge(reference, sampleWindow(rng, failing, 10_000), {}, history).confirmed).toEqual([]);
  });

  test('drift is confirmed at the k-th breached window of consecutive shifted traffic', () => {
    const history: WindowVerdict[] = [];
    const statuses: string[] = [];
    for (let i = 0; i < 4; i++) {
      const v = judge(reference, sampleWindow(rng, shifted(base, 'ctr-drop', 0.5), 10_000), {}, history);
      history.push(v);
      statuses.push(v.status);
    }
    expect(statuses).toEqual(['warning', 'warning', 'drift', 'drift']);
    expect(history[2]!.confirmed).toEqual(['ctr']);
    expect(history[2]!.reason).toContain('drift confirmed in ctr (3 of the last 3 windows)');
  });

  test('PSI can replace Jensen-Shannon; its threshold carries no sampling allowance', () => {
    const v = judge(reference, sampleWindow(rng, shifted(base, 'score', 0.4), 10_000), {
      signals: { 'score-top1': { metric: 'psi', threshold: 0.2 } },
    });
    const s = signal(v, 'score-top1');
    expect(s).toMatchObject({ metric: 'psi', threshold: 0.2, limit: 0.2, breached: true });
    expect(s.value!).toBeGreaterThan(1);
  });

  test('a disabled signal is neither judged nor counted in the Bonferroni division', () => {
    const v = judge(reference, sampleWindow(rng, shifted(base, 'ctr-drop', 0.5), 10_000), {
      signals: { ctr: { enabled: false } },
    });
    expect(v.signals.map((s) => s.name)).not.toContain('ctr');
    expect(v.status).toBe('ok');
  });
});

describe('the test is a second condition at alpha / enabled signals', () => {
  test('a p-value between alpha / 9 and alpha breaches only when the signal is tested alone', () => {
    const rng = seeded(9);
    const reference = baseline(rng, base, 10_000);
    reference.ctr = [26_400, 3_600]; // CTR 0.12
    const current = sampleWindow(rng, base, 1_250, { exact: true });
    current.counts.ctr = [1_131, 119]; // CTR 0.0952: a relative drop of 0.207
    const all = signal(judge(reference, current), 'ctr');
    expect(all.value).toBeCloseTo(0.2067, 4);
    expect(all.pValue!).toBeGreaterThan(0.01 / SIGNALS.length);
    expect(all.pValue!).toBeLessThan(0.01);
    expect(all).toMatchObject({ significant: false, breached: false });
    const alone = Object.fromEntries(SIGNALS.filter((s) => s !== 'ctr').map((s) => [s, { enabled: false }]));
    const v = judge(reference, current, { signals: alone });
    expect(v.signals.map((s) => s.name)).toEqual(['ctr']);
    expect(signal(v, 'ctr')).toMatchObject({ significant: true, breached: true });
  });
});

describe('insufficient data', () => {
  const rng = seeded(77);
  const reference = baseline(rng, base, 5_000);

  test('a window below minRequests is insufficient-data, never ok and never drift', () => {
    const history: WindowVerdict[] = [];
    for (let i = 0; i < 3; i++)
      history.push(judge(reference, sampleWindow(rng, shifted(base, 'ctr-drop', 0.6), 5_000), {}, history));
    expect(history.map((h) => h.status)).toEqual(['warning', 'warning', 'drift']);
    const v = judge(reference, sampleWindow(rng, shifted(base, 'ctr-drop', 0.6), 999), {}, history);
    expect(v.status).toBe('insufficient-data');
    expect(v).toMatchObject({ requests: 999, breached: [], alerts: [], confirmed: [] });
    expect(v.reason).toBe('insufficient data: 999 requests < minRequests 1000');
    for (const s of v.signals) {
      expect(s.breached).toBe(false);
      expect(s.insufficient).toBeDefined();
    }
    expect(signal(v, 'score-top1').insufficient).toBe('window has 999 requests < minRequests 1000');
    // The figures are still there for humans.
    expect(signal(v, 'ctr').value!).toBeGreaterThan(0.4);
  });

  test('below minFeedback only the feedback signals are insufficient', () => {
    const quiet: Traffic = { ...shifted(base, 'ctr-drop', 0.6), feedbackPerRequest: 0.2 };
    const v = judge(reference, sampleWindow(rng, quiet, 1_000));
    expect(v.feedback).toBe(200);
    expect(
      v.signals
        .filter((s) => s.insufficient)
        .map((s) => s.name)
        .sort(),
    ).toEqual(['ctr', 'feedback-new-items']);
    expect(signal(v, 'ctr').insufficient).toBe('200 feedback events in the window < minFeedback 300');
    expect(signal(v, 'ctr').breached).toBe(false);
    expect(v.status).toBe('ok');
    expect(v.reason).toContain('insufficient: feedback-new-items, ctr');
  });

  test('a signal without reference data is insufficient and its verdict stays JSON-safe', () => {
    const thin = { ...reference, 'score-top1': reference['score-top1'].map(() => 0), ctr: [15_000, 0] };
    const v = judge(thin, sampleWindow(rng, base, 2_000));
    expect(signal(v, 'score-top1')).toMatchObject({
      value: null,
      pValue: null,
      breached: false,
      insufficient: 'reference has 0 answers with items < minRequests 1000',
    });
    expect(signal(v, 'ctr')).toMatchObject({ value: null, insufficient: 'no clicks in the reference' });
    expect(JSON.parse(JSON.stringify(v))).toEqual(v);
    expect(JSON.stringify(v).length).toBeLessThan(4_000);
  });

  test('counts of the wrong shape are an error naming the field', () => {
    const bad = sampleWindow(rng, base, 2_000);
    bad.counts.ctr = [1, 2, 3];
    expect(() => judge(reference, bad)).toThrow('current.counts.ctr has 3 buckets, expected 2');
    const neg = sampleWindow(rng, base, 2_000);
    neg.counts.fallback = [-1, 5];
    expect(() => judge(reference, neg)).toThrow('current.counts.fallback[0] is not a count (value: -1)');
  });
});

describe('persistence: k of the last m evaluated windows', () => {
  const rng = seeded(31);
  const reference = baseline(rng, base, 5_000);
  const past = (breached: SignalName[], status: WindowVerdict['status'] = breached.length ? 'warning' : 'ok') =>
    ({
      windowStartMs: 0,
      windowEndMs: 0,
      status,
      requests: status === 'insufficient-data' ? 10 : 5_000,
      feedback: 0,
      signals: [],
      breached,
      alerts: [],
      confirmed: [],
      reason: '',
    }) satisfies WindowVerdict;
  const B = past(['ctr']);
  const O = past([]);
  const I = past([], 'insufficient-data');
  const drop = () => sampleWindow(rng, shifted(base, 'ctr-drop', 0.5), 5_000);
  const calm = () => sampleWindow(rng, base, 5_000);

  test.each<[string, WindowVerdict[], () => WindowSummary, SignalName[]]>([
    ['B B + B', [B, B], drop, ['ctr']],
    ['B O + B: 2 of 3', [B, O], drop, []],
    ['B O O + B: 2 of 4', [B, O, O], drop, []],
    ['B B O O + B: 2 of the last 4', [B, B, O, O], drop, []],
    ['B B B + O: 3 of the last 4, this one included', [B, B, B], calm, ['ctr']],
    ['B O I I B + B: insufficient windows are skipped', [B, O, I, I, B], drop, ['ctr']],
    ['B I B I + B', [B, I, B, I], drop, ['ctr']],
  ])('%s', (_label, history, window, confirmed) => {
    const v = judge(reference, window(), {}, history);
    expect(v.confirmed).toEqual(confirmed);
    expect(v.status).toBe(confirmed.length ? 'drift' : v.breached.length ? 'warning' : 'ok');
  });

  test('k and m come from the config', () => {
    expect(judge(reference, drop(), { persistence: { k: 1, m: 1 } }).status).toBe('drift');
    expect(judge(reference, drop(), { persistence: { k: 2, m: 2 } }, [B, O]).status).toBe('warning');
    expect(judge(reference, drop(), { persistence: { k: 2, m: 3 } }, [B, O]).status).toBe('drift');
  });
});
