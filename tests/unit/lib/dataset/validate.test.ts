import { EtlConfig } from '../../../../lib/dataset/etl-config';
import { validateRecord } from '../../../../lib/dataset/validate';
import { DataValidationError, formatProblem } from '../../../../lib/errors';

const cfg = EtlConfig.parse({ format: 'csv', columns: { rating: 'rating' }, ratingRange: [1, 5] });
const now = 1_700_000_000;
const rec = (over: Partial<Record<'user' | 'item' | 'timestamp' | 'rating', string>>) => ({
  line: 7,
  user: 'u1',
  item: 'i1',
  timestamp: '1600000000',
  rating: '4',
  ...over,
});

describe('validateRecord', () => {
  test('a valid record becomes an interaction with unix seconds', () => {
    expect(validateRecord(rec({}), 'logs.csv', cfg, now)).toEqual({
      user: 'u1',
      item: 'i1',
      ts: 1600000000,
      rating: 4,
      file: 'logs.csv',
      line: 7,
    });
  });

  test.each([
    [{ rating: '9' }, 'rating', 'is out of range [1, 5]'],
    [{ rating: 'five' }, 'rating', 'is not a number'],
    [{ user: '' }, 'user_id', 'is empty'],
    [{ item: ' i1' }, 'item_id', 'has control characters or surrounding whitespace'],
    [{ timestamp: 'yesterday' }, 'timestamp', 'is not a number'],
    [{ timestamp: '100' }, 'timestamp', 'is before the minimum timestamp'],
    [{ timestamp: '1800000000' }, 'timestamp', 'is in the future'],
  ])('%j is rejected naming file, line, field and value', (over, field, message) => {
    const result = validateRecord(rec(over), 'logs.csv', cfg, now);
    expect(Array.isArray(result)).toBe(true);
    const [problem] = result as ReturnType<typeof Array.prototype.slice>;
    expect(problem).toMatchObject({ file: 'logs.csv', line: 7, field, message: expect.stringContaining(message) });
    expect(formatProblem(problem)).toMatch(new RegExp(`^logs\\.csv:7: field '${field}'`));
  });

  test('millisecond timestamps are converted to seconds', () => {
    const ms = EtlConfig.parse({ format: 'csv', timestampUnit: 'ms' });
    expect(validateRecord(rec({ timestamp: '1600000000999', rating: undefined }), 'f', ms, now)).toMatchObject({
      ts: 1600000000,
    });
  });

  test('DataValidationError lists the first problems and the total', () => {
    const problems = Array.from({ length: 7 }, (_, i) => ({
      file: 's3://b/raw.csv',
      line: i + 2,
      field: 'rating',
      value: '9',
      message: 'is out of range [1, 5]',
    }));
    const err = new DataValidationError(problems, 12);
    expect(err.message).toContain('12 problem(s)');
    expect(err.message).toContain(`s3://b/raw.csv:2: field 'rating' is out of range [1, 5] (value: "9")`);
    expect(err.message).toContain('... and 7 more');
  });
});
