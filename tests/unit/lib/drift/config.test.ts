import { DriftConfig, parseDriftConfig } from '../../../../lib/drift/config';
import { SIGNALS } from '../../../../lib/drift/summary';
import { ConfigError } from '../../../../lib/errors';

test('an empty config is complete, with the documented defaults', () => {
  const cfg = parseDriftConfig({});
  expect(cfg).toMatchObject({
    intervalSeconds: 3600,
    graceSeconds: 300,
    baselineWindows: 3,
    minRequests: 1000,
    minFeedback: 300,
    alpha: 0.01,
    persistence: { k: 3, m: 4 },
    cooldownSeconds: 21_600,
    retrain: true,
  });
  expect(Object.keys(cfg.signals).sort()).toEqual([...SIGNALS].sort());
  expect(cfg.signals['recommended-popularity']).toEqual({ enabled: true, metric: 'jensen-shannon', threshold: 0.1 });
  expect(cfg.signals['score-top1']).toEqual({ enabled: true, metric: 'jensen-shannon', threshold: 0.1 });
  expect(cfg.signals['user-unknown']).toEqual({ enabled: true, maxChange: 0.1 });
  expect(cfg.signals.fallback).toEqual({ enabled: true, maxChange: 0.1 });
  expect(cfg.signals.ctr).toEqual({ enabled: true, maxRelativeDrop: 0.2 });
  expect(parseDriftConfig(undefined)).toEqual(cfg);
  expect(DriftConfig.parse({})).toEqual(cfg);
});

test('a partial override keeps the other defaults, also within a group', () => {
  const cfg = parseDriftConfig({
    intervalSeconds: 5,
    persistence: { k: 2 },
    signals: { 'history-length': { metric: 'psi', threshold: 0.2 }, ctr: { enabled: false } },
  });
  expect(cfg.intervalSeconds).toBe(5);
  expect(cfg.persistence).toEqual({ k: 2, m: 4 });
  expect(cfg.signals['history-length']).toEqual({ enabled: true, metric: 'psi', threshold: 0.2 });
  expect(cfg.signals.ctr).toEqual({ enabled: false, maxRelativeDrop: 0.2 });
  expect(cfg.signals['user-unknown']).toEqual(parseDriftConfig().signals['user-unknown']);
});

const errorOf = (input: unknown): ConfigError => {
  try {
    parseDriftConfig(input);
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be rejected`);
};

test.each([
  [{ intervalSeconds: 1 }, 'drift.intervalSeconds', 1],
  [{ graceSeconds: -1 }, 'drift.graceSeconds', -1],
  [{ baselineWindows: 0 }, 'drift.baselineWindows', 0],
  [{ minRequests: 10.5 }, 'drift.minRequests', 10.5],
  [{ alpha: 0 }, 'drift.alpha', 0],
  [{ persistence: { m: 21 } }, 'drift.persistence.m', 21],
  [{ persistence: { k: 5, m: 4 } }, 'drift.persistence.k', 5],
  [{ persistence: { k: 5 } }, 'drift.persistence.k', 5],
  [{ retrain: 'yes' }, 'drift.retrain', 'yes'],
  [{ signals: { ctr: { maxRelativeDrop: 0 } } }, 'drift.signals.ctr.maxRelativeDrop', 0],
  [{ signals: { 'score-mean': { metric: 'ks' } } }, 'drift.signals.score-mean.metric', 'ks'],
  [{ signals: { fallback: { maxChange: 1.5 } } }, 'drift.signals.fallback.maxChange', 1.5],
])('rejects %j naming the field and the value', (input, field, value) => {
  const err = errorOf(input);
  expect(err).toBeInstanceOf(ConfigError);
  expect(err.field).toBe(field);
  expect(err.value).toBe(value);
  expect(err.message).toContain(`config field '${field}'`);
  expect(err.message).toContain(`(value: ${JSON.stringify(value)})`);
});

test('the persistence rule says which bound k broke', () => {
  expect(errorOf({ persistence: { k: 5, m: 4 } }).message).toContain('must be at most persistence.m');
});

test('an unknown setting or signal is an error, not a silently ignored typo', () => {
  const top = errorOf({ intervalSecond: 60 });
  expect(top.field).toBe('drift.intervalSecond');
  expect(top.value).toBe(60);
  const signal = errorOf({ signals: { popularity: { threshold: 0.2 } } });
  expect(signal.field).toBe('drift.signals.popularity');
  expect(signal.message).toContain('recommended-popularity');
  const setting = errorOf({ signals: { ctr: { threshold: 0.3 } } });
  expect(setting.field).toBe('drift.signals.ctr.threshold');
  expect(setting.value).toBe(0.3);
});
