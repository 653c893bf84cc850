import { analyseCanary, normalCdf, pValueLower, type VersionWindow } from '../../../../lib/rollout/analysis';
import { parseRolloutConfig } from '../../../../lib/rollout/config';

const cfg = parseRolloutConfig({}).canary.analysis;
const w = (over: Partial<VersionWindow> = {}): VersionWindow => ({
  requests: 1000,
  errors: 0,
  p99Ms: 4,
  clicks: 400,
  impressions: 1000,
  ...over,
});

describe('statistics', () => {
  it('normal CDF matches known values', () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 6);
    expect(normalCdf(1.959964)).toBeCloseTo(0.975, 5);
    expect(normalCdf(-2.326348)).toBeCloseTo(0.01, 5);
  });
  it('one-sided two-proportion test', () => {
    expect(pValueLower(40, 100, 40, 100)).toBeCloseTo(0.5, 6);
    expect(pValueLower(10, 100, 40, 100)).toBeLessThan(1e-5);
    expect(pValueLower(60, 100, 40, 100)).toBeGreaterThan(0.99);
  });
});

describe('analyseCanary', () => {
  it('passes a canary that matches the baseline', () => {
    const r = analyseCanary(w({ clicks: 390 }), w(), cfg);
    expect(r.outcome).toBe('pass');
    expect(r.checks.map((c) => c.outcome)).toEqual(['pass', 'pass', 'pass', 'pass']);
  });

  it('is inconclusive, never a pass, without traffic', () => {
    const r = analyseCanary(w({ requests: 0, clicks: 0, impressions: 0 }), w(), cfg);
    expect(r.outcome).toBe('inconclusive');
    expect(r.summary).toMatch(/^not enough traffic: canary 0 \/ baseline 1000 requests \(need 100 each\)/);
    const idle = analyseCanary(
      w({ requests: 0, clicks: 0, impressions: 0 }),
      w({ requests: 0, clicks: 0, impressions: 0 }),
      cfg,
    );
    expect(idle.outcome).toBe('inconclusive');
  });

  it('fails random recommendations on click-through', () => {
    const r = analyseCanary(w({ requests: 150, clicks: 2, impressions: 150 }), w(), cfg);
    expect(r.outcome).toBe('fail');
    expect(r.summary).toMatch(/click-through \(canary CTR 1\.33% \(2\/150\) vs baseline 40\.00%/);
  });

  it('is inconclusive when requests flow but no feedback does', () => {
    const r = analyseCanary(w({ clicks: 0 }), w({ clicks: 0 }), cfg);
    expect(r.outcome).toBe('inconclusive');
    expect(r.checks.find((c) => c.name === 'click-through')?.detail).toMatch(/baseline clicks 0 \(need 10\)/);
  });

  it('does not fail a small CTR difference that is not significant or not material', () => {
    expect(analyseCanary(w({ clicks: 370 }), w(), cfg).outcome).toBe('pass'); // 7.5% drop < 10%
  });

  it('fails added latency and errors as soon as the canary has enough requests, even if feedback is short', () => {
    const slow = analyseCanary(w({ requests: 120, p99Ms: 210, impressions: 10, clicks: 4 }), w(), cfg);
    expect(slow.outcome).toBe('fail');
    expect(slow.checks.find((c) => c.name === 'p99-latency')?.detail).toMatch(
      /canary p99 210\.00 ms .* limit 11\.00 ms/,
    );
    const failing = analyseCanary(w({ errors: 200 }), w(), cfg);
    expect(failing.checks.find((c) => c.name === 'error-rate')?.outcome).toBe('fail');
  });

  it('a failed check wins over an inconclusive one', () => {
    const r = analyseCanary(
      w({ requests: 120, errors: 30, impressions: 0, clicks: 0 }),
      w({ impressions: 0, clicks: 0 }),
      cfg,
    );
    expect(r.outcome).toBe('fail');
  });
});

describe('rollout config', () => {
  it('has canary steps 5 → 25 → 50 by default and rejects non-increasing weights', () => {
    expect(parseRolloutConfig({}).canary.steps.map((s) => s.weight)).toEqual([5, 25, 50]);
    expect(() =>
      parseRolloutConfig({
        canary: {
          steps: [
            { weight: 25, bakeSeconds: 1 },
            { weight: 10, bakeSeconds: 1 },
          ],
        },
      }),
    ).toThrow(/canary\.steps\.1\.weight: 10 must be greater than the previous step's 25/);
    expect(() => parseRolloutConfig({ canary: { stepz: [] } }, 'r.json')).toThrow(/r\.json is invalid: canary/);
  });
});
