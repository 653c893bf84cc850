import { buildDataset, dedupe, versionHash, type SourcedInteraction } from '../../../../lib/dataset/build';
import { EtlConfig } from '../../../../lib/dataset/etl-config';
import { splitBoundaries, splitOf, TEST, TRAIN, VALID } from '../../../../lib/dataset/split';

const cfg = EtlConfig.parse({ format: 'csv' });
const row = (user: string, item: string, ts: number, line = 1): SourcedInteraction => ({
  user,
  item,
  ts,
  rating: NaN,
  file: 'f.csv',
  line,
});

describe('time split', () => {
  test('nothing in train or validation happens at or after the first test timestamp', () => {
    const ts = Array.from({ length: 1000 }, (_, i) => 1_600_000_000 + Math.floor(i / 3) * 60);
    const b = splitBoundaries(ts, 0.1, 0.1);
    const splits = ts.map((t) => splitOf(t, b));
    const maxOf = (s: number) => Math.max(...ts.filter((_, i) => splits[i] === s));
    const minOf = (s: number) => Math.min(...ts.filter((_, i) => splits[i] === s));
    expect(maxOf(TRAIN)).toBeLessThan(minOf(VALID));
    expect(maxOf(VALID)).toBeLessThan(minOf(TEST));
    // ties at a boundary go to the later split, so no timestamp is in two splits
    expect(splitOf(b.testStart, b)).toBe(TEST);
    expect(splitOf(b.validStart, b)).toBe(VALID);
  });

  test('fractions are respected up to ties', () => {
    const ts = Array.from({ length: 10_000 }, (_, i) => 1_600_000_000 + i);
    const b = splitBoundaries(ts, 0.1, 0.2);
    const counts = [0, 0, 0];
    for (const t of ts) counts[splitOf(t, b)]! += 1;
    expect(counts).toEqual([7000, 1000, 2000]);
  });

  test('a window that collapses onto one timestamp is an error, not a silent leak', () => {
    const ts = [...Array.from({ length: 10 }, (_, i) => i + 1_600_000_000), ...Array(90).fill(1_700_000_000)];
    expect(() => splitBoundaries(ts, 0.1, 0.1)).toThrow('validation window is empty');
  });
});

describe('dedupe and build', () => {
  test('exact duplicates are dropped and counted, or reported with both lines', () => {
    const input = () => [row('u1', 'i1', 10, 2), row('u1', 'i1', 10, 5), row('u2', 'i1', 10, 3)];
    const dropped = dedupe(input(), 'drop');
    expect(dropped.rows).toHaveLength(2);
    expect(dropped.dropped).toBe(1);
    const strict = dedupe(input(), 'error');
    expect(strict.problems[0]).toMatchObject({ file: 'f.csv', line: 5, message: 'duplicates f.csv:2' });
  });

  test('items are indexed from 1 (0 is padding), users from 0, in canonical order', () => {
    const rows = [row('ub', 'ix', 3), row('ua', 'iy', 1), row('ua', 'ix', 2), row('uc', 'iz', 4), row('ua', 'iz', 5)];
    const { rows: sorted, dropped } = dedupe(rows, 'drop');
    const ds = buildDataset(sorted, dropped, EtlConfig.parse({ format: 'csv', split: { valid: 0.2, test: 0.2 } }));
    expect(ds.users).toEqual(['ua', 'ub', 'uc']);
    expect(ds.items).toEqual(['iy', 'ix', 'iz']);
    expect(Array.from(ds.itemIdx)).toEqual([1, 2, 2, 3, 3]);
    expect(ds.splitCounts).toEqual([3, 1, 1]);
  });

  test('the version hash depends on the data and the config, not on input order', () => {
    const a = dedupe([row('u1', 'i1', 1), row('u2', 'i2', 2)], 'drop').rows;
    const b = dedupe([row('u2', 'i2', 2), row('u1', 'i1', 1)], 'drop').rows;
    expect(versionHash(a, cfg)).toBe(versionHash(b, cfg));
    expect(versionHash(a, EtlConfig.parse({ format: 'csv', split: { valid: 0.2, test: 0.1 } }))).not.toBe(
      versionHash(a, cfg),
    );
    expect(versionHash([...a, row('u3', 'i3', 3)], cfg)).not.toBe(versionHash(a, cfg));
  });
});
