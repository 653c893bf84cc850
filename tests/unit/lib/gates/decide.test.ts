import { parseGateConfig } from '../../../../lib/gates/config';
import { decidePromotion, type Difference, type GateInputs, type Interval } from '../../../../lib/gates/decide';

const iv = (point: number, lo: number, hi: number): Interval => ({ point, lo, hi });
const diff = (point: number, lo: number, hi: number, rel?: Interval): Difference => ({ point, lo, hi, relative: rel });

function inputs(overrides: Partial<GateInputs> = {}): GateInputs {
  return {
    model: { 'ndcg@10': iv(0.3, 0.28, 0.32) },
    vsPopularity: { 'ndcg@10': diff(0.03, 0.01, 0.05, iv(0.1, 0.03, 0.17)) },
    slices: [],
    ...overrides,
  };
}

describe('gate config', () => {
  it('fills defaults: proven better than popularity, non-inferior to the champion within 2%', () => {
    const c = parseGateConfig({});
    expect(c.vsPopularity).toEqual({ metric: 'ndcg@10', minAbsolute: 0 });
    expect(c.vsChampion).toEqual({ metric: 'ndcg@10', minRelative: -0.02 });
    expect(c.quantization.ndcgTolerance).toBe(0.01);
  });

  it('names unknown keys and bad values', () => {
    expect(() => parseGateConfig({ vsPopularity: { metrc: 'ndcg@10' } }, 'gates.json')).toThrow(
      /gates\.json is invalid: vsPopularity: .*metrc/,
    );
    expect(() => parseGateConfig({ absolute: { 'ndcg@11': 0.1 } })).toThrow(/absolute/);
    expect(() => parseGateConfig({ sliceRegression: { maxRelative: -1 } })).toThrow(/sliceRegression\.maxRelative/);
  });
});

describe('decidePromotion', () => {
  const config = parseGateConfig({ absolute: { 'ndcg@10': 0.25 } });

  it('passes a model proven better than popularity with no champion yet', () => {
    const d = decidePromotion(inputs(), config);
    expect(d.passed).toBe(true);
    expect(d.checks.map((c) => [c.gate, c.outcome])).toEqual([
      ['absolute ndcg@10', 'pass'],
      ['vs popularity', 'pass'],
      ['vs champion', 'skipped'],
    ]);
    expect(d.summary).toMatch(/all gates passed/);
  });

  it('uses the lower confidence bound, not the point estimate', () => {
    // The point estimate is better than popularity, but the interval includes 0: not proven.
    const d = decidePromotion(inputs({ vsPopularity: { 'ndcg@10': diff(0.02, -0.004, 0.044) } }), config);
    expect(d.passed).toBe(false);
    expect(d.summary).toMatch(/vs popularity \(Δndcg@10 lower bound -0\.0040 ≤ 0\.0000/);
  });

  it('fails the absolute floor on the lower bound', () => {
    const d = decidePromotion(inputs({ model: { 'ndcg@10': iv(0.26, 0.24, 0.28) } }), config);
    expect(d.checks.find((c) => c.gate === 'absolute ndcg@10')?.outcome).toBe('fail');
  });

  it('fails when a metric the config judges is missing', () => {
    const d = decidePromotion(inputs({ model: {} }), config);
    expect(d.checks[0]).toMatchObject({ outcome: 'fail', detail: 'no figures for ndcg@10' });
  });

  it('accepts a champion-equivalent model under the non-inferiority margin and rejects a worse one', () => {
    const same = { version: '3', vsChampion: { 'ndcg@10': diff(0, -0.003, 0.003, iv(0, -0.01, 0.01)) } };
    expect(decidePromotion(inputs({ champion: same }), config).passed).toBe(true);
    const worse = { version: '3', vsChampion: { 'ndcg@10': diff(-0.02, -0.03, -0.01, iv(-0.06, -0.09, -0.03)) } };
    const d = decidePromotion(inputs({ champion: worse }), config);
    expect(d.passed).toBe(false);
    expect(d.summary).toMatch(/vs champion v3 \(relative Δndcg@10 lower bound -9\.0% ≤ -2\.0%/);
  });

  it('fails a slice only when its regression is proven beyond the margin, and skips small slices', () => {
    const champion = { version: '1', vsChampion: { 'ndcg@10': diff(0.01, 0.001, 0.02, iv(0.03, 0.003, 0.06)) } };
    const slices = [
      // Proven regression: the whole interval is below -10%.
      {
        name: 'heavy',
        nUsers: 200,
        vsPopularity: {},
        vsChampion: { 'ndcg@10': diff(-0.1, -0.15, -0.05, iv(-0.3, -0.4, -0.2)) },
      },
      // Wide interval reaching above -10%: not proven.
      {
        name: 'light',
        nUsers: 200,
        vsPopularity: {},
        vsChampion: { 'ndcg@10': diff(-0.1, -0.3, 0.1, iv(-0.3, -0.8, 0.2)) },
      },
      {
        name: 'cold',
        nUsers: 5,
        vsPopularity: {},
        vsChampion: { 'ndcg@10': diff(-0.3, -0.4, -0.2, iv(-0.9, -1, -0.8)) },
      },
    ];
    const d = decidePromotion(inputs({ champion, slices }), config);
    const outcome = Object.fromEntries(d.checks.map((c) => [c.gate, c.outcome]));
    expect(outcome).toMatchObject({
      'slice heavy vs champion': 'fail',
      'slice light vs champion': 'pass',
      'slice cold vs champion': 'skipped',
    });
    expect(d.passed).toBe(false);
    expect(d.summary).toMatch(/^failed 1 gate\(s\): slice heavy vs champion/);
  });

  it('does not judge slices against a champion that does not exist', () => {
    const slices = [{ name: 'heavy', nUsers: 200, vsPopularity: {} }];
    expect(decidePromotion(inputs({ slices }), config).checks.some((c) => c.gate.startsWith('slice'))).toBe(false);
  });

  it('judges an improvement gate on a slice when asked (users with a history), and fails naming a missing slice', () => {
    const sliced = parseGateConfig({
      vsPopularity: { metric: 'ndcg@10', minRelative: -0.15, slice: 'history=some' },
      vsChampion: { metric: 'ndcg@10', minRelative: -0.15, slice: 'history=some' },
      sliceRegression: { maxRelative: 0.5 },
    });
    // Overall the model loses 25% (cold users drag it down); on users with a history it is no worse than 5% below.
    const base = inputs({
      vsPopularity: { 'ndcg@10': diff(-0.02, -0.03, -0.01, iv(-0.25, -0.3, -0.2)) },
      champion: { version: '4', vsChampion: { 'ndcg@10': diff(-0.02, -0.03, -0.01, iv(-0.25, -0.3, -0.2)) } },
      slices: [
        {
          name: 'history=some',
          nUsers: 120,
          vsPopularity: { 'ndcg@10': diff(0.01, -0.002, 0.02, iv(0.05, -0.05, 0.1)) },
          vsChampion: { 'ndcg@10': diff(0.0, -0.004, 0.004, iv(0, -0.04, 0.04)) },
        },
      ],
    });
    const d = decidePromotion(base, sliced);
    expect(d.checks.filter((c) => c.gate.startsWith('vs ')).map((c) => [c.gate, c.outcome])).toEqual([
      ['vs popularity (history=some)', 'pass'],
      ['vs champion v4 (history=some)', 'pass'],
    ]);
    // The same figures judged on every user fail: the slice is what passed it.
    expect(decidePromotion(base, parseGateConfig({ ...sliced, vsPopularity: { minRelative: -0.15 } })).passed).toBe(
      false,
    );
    const none = decidePromotion({ ...base, slices: [] }, sliced);
    expect(none.passed).toBe(false);
    expect(none.checks.find((c) => c.gate === 'vs popularity (history=some)')?.detail).toBe(
      'no slice history=some in the evaluation (slices: none)',
    );
  });
});
