import { ConfigError } from '../../../../lib/errors';
import { CHECK_NAMES, parseValidationConfig, ValidationConfig } from '../../../../lib/dataset/validation-config';

test('an empty config is complete: every check has a severity and its thresholds', () => {
  const cfg = parseValidationConfig({});
  expect(Object.keys(cfg).sort()).toEqual([...CHECK_NAMES].sort());
  for (const name of CHECK_NAMES) expect(['warn', 'fail']).toContain(cfg[name].severity);
  expect(cfg.volumeDrop.maxDrop).toBeGreaterThan(0);
  expect(cfg.popularityShift).toEqual({
    severity: 'fail',
    metric: 'jensen-shannon',
    threshold: 0.1,
    newRowsThreshold: 0.3,
  });
  expect(parseValidationConfig(undefined)).toEqual(cfg);
});

test('a partial override keeps the other defaults of the same check', () => {
  const cfg = parseValidationConfig({
    popularityShift: { metric: 'l-infinity', threshold: 0.05 },
    unseenUsers: { severity: 'off' },
  });
  expect(cfg.popularityShift).toEqual({
    severity: 'fail',
    metric: 'l-infinity',
    threshold: 0.05,
    newRowsThreshold: 0.3,
  });
  expect(cfg.unseenUsers).toEqual({ severity: 'off', maxShare: parseValidationConfig().unseenUsers.maxShare });
  expect(cfg.dailyVolumeDip).toEqual(parseValidationConfig().dailyVolumeDip);
});

const errorOf = (input: unknown): ConfigError => {
  try {
    parseValidationConfig(input);
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be rejected`);
};

test.each([
  [{ popularityShift: { threshold: -0.5 } }, 'validation.popularityShift.threshold', -0.5],
  [{ volumeDrop: { maxDrop: 1.5 } }, 'validation.volumeDrop.maxDrop', 1.5],
  [{ unseenItems: { severity: 'error' } }, 'validation.unseenItems.severity', 'error'],
  [{ userActivityShift: { metric: 'ks' } }, 'validation.userActivityShift.metric', 'ks'],
  [{ dailyVolumeDip: { windowDays: 2.5 } }, 'validation.dailyVolumeDip.windowDays', 2.5],
  [{ timestampGap: { maxHours: 0 } }, 'validation.timestampGap.maxHours', 0],
])('rejects %j naming the field and the value', (input, field, value) => {
  const err = errorOf(input);
  expect(err).toBeInstanceOf(ConfigError);
  expect(err.field).toBe(field);
  expect(err.value).toBe(value);
  expect(err.message).toContain(`config field '${field}'`);
  expect(err.message).toContain(`(value: ${JSON.stringify(value)})`);
});

test('an unknown check or setting is an error, not a silently ignored typo', () => {
  const check = errorOf({ popularityDrift: { threshold: 0.2 } });
  expect(check.field).toBe('validation.popularityDrift');
  expect(check.message).toContain('is not a known setting');
  expect(check.message).toContain('popularityShift');
  const setting = errorOf({ volumeDrop: { maxdrop: 0.5 } });
  expect(setting.field).toBe('validation.volumeDrop.maxdrop');
  expect(setting.value).toBe(0.5);
});

test('a config that is not an object is rejected as a whole', () => {
  const err = errorOf(5);
  expect(err.field).toBe('validation');
  expect(err.value).toBe(5);
});

test('the schema is usable directly (zod) with the same defaults', () => {
  expect(ValidationConfig.parse({})).toEqual(parseValidationConfig({}));
});
