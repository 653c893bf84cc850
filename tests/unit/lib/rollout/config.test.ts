/** Rollout configs are bounded: no config can make a workflow loop or wait without end. */
import { parseRolloutConfig } from '../../../../lib/rollout/config';

const analysis = (a: Record<string, number>) => ({ canary: { analysis: a } });

describe('parseRolloutConfig bounds', () => {
  it('caps the re-analyses of a step with too little traffic', () => {
    expect(() => parseRolloutConfig(analysis({ retrySeconds: 1, maxWaitSeconds: 3600 }))).toThrow(
      'canary.analysis: maxWaitSeconds 3600 / retrySeconds 1 would re-analyse a step 3600 times; at most 360',
    );
    expect(() => parseRolloutConfig(analysis({ retrySeconds: 0.001, maxWaitSeconds: 1 }))).toThrow(
      /canary\.analysis\.retrySeconds: .*>=1/,
    );
    expect(() => parseRolloutConfig(analysis({ maxWaitSeconds: 86_400 }))).toThrow(/canary\.analysis\.maxWaitSeconds/);
    expect(
      parseRolloutConfig(analysis({ retrySeconds: 10, maxWaitSeconds: 3600 })).canary.analysis.maxWaitSeconds,
    ).toBe(3600);
  });

  it('caps bakes, steps, the approval wait and the wait for an environment', () => {
    expect(() => parseRolloutConfig({ canary: { steps: [{ weight: 5, bakeSeconds: 1e9 }] } })).toThrow(
      /canary\.steps\.0\.bakeSeconds/,
    );
    const steps = Array.from({ length: 11 }, (_, i) => ({ weight: i + 1, bakeSeconds: 1 }));
    expect(() => parseRolloutConfig({ canary: { steps } })).toThrow(/canary\.steps: .*10/);
    expect(() => parseRolloutConfig({ approval: { timeoutSeconds: 1e9 } })).toThrow(/approval\.timeoutSeconds/);
    expect(() => parseRolloutConfig({ environments: { maxWaitSeconds: 1e9 } })).toThrow(/environments\.maxWaitSeconds/);
    expect(parseRolloutConfig({}).environments).toEqual({ retrySeconds: 10, maxWaitSeconds: 21_600 });
  });
});
