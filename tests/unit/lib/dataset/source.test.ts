import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { readAndValidate } from '../../../../activities/etl';
import { EtlConfig } from '../../../../lib/dataset/etl-config';
import { Manifest, manifestSources } from '../../../../lib/dataset/manifest';
import { ColumnMapping, isProblem, readRaw, type RawEntry } from '../../../../lib/dataset/raw-formats';
import {
  parseSources,
  readingOf,
  sourcesKey,
  sourceUri,
  type SourceSpec,
  type SourceSpecInput,
} from '../../../../lib/dataset/source';
import { DataValidationError, ConfigError } from '../../../../lib/errors';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-source-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const T0 = 1_700_000_000_000; // ms
/** A feedback log line as the serving tier writes it (serving/log-records.ts FeedbackLogRecord). */
const fb = (user: string, item: string, event: string, eventTimeMs: number, extra: object = {}) =>
  JSON.stringify({
    time_ms: eventTimeMs + 250,
    request_id: `r-${user}-${item}`,
    user_id: user,
    item_id: item,
    event,
    event_time_ms: eventTimeMs,
    value: 0,
    model_name: 'two-tower',
    model_version: '3',
    ...extra,
  });

async function write(name: string, lines: string[]): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, name.endsWith('.gz') ? gzipSync(lines.join('\n') + '\n') : lines.join('\n') + '\n');
  return file;
}

async function readAll(file: string, options: Parameters<typeof readRaw>[3] = {}): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  for await (const batch of readRaw(file, 'recsys-feedback', ColumnMapping.parse({}), options)) out.push(...batch);
  return out;
}

const LOG = [
  fb('u1', 'i1', 'FEEDBACK_EVENT_IMPRESSION', T0),
  fb('u1', 'i1', 'FEEDBACK_EVENT_CLICK', T0 + 1_999),
  fb('u2', 'i7', 'FEEDBACK_EVENT_PURCHASE', T0 + 5_000),
  fb('u2', 'i8', 'FEEDBACK_EVENT_DISMISS', T0 + 6_000),
  fb('u3', 'i2', 'FEEDBACK_EVENT_CLICK', T0 + 7_000, { some_future_field: { nested: true } }),
];

describe('the recsys-feedback reader', () => {
  test('only clicks by default; other events are skipped and counted, not problems; times stay as logged (ms)', async () => {
    const skipped: string[] = [];
    const rows = await readAll(await write('default.jsonl', LOG), { onSkip: (e) => skipped.push(e) });
    expect(rows).toEqual([
      { line: 2, user: 'u1', item: 'i1', timestamp: String(T0 + 1_999), rating: undefined },
      { line: 5, user: 'u3', item: 'i2', timestamp: String(T0 + 7_000), rating: undefined },
    ]);
    expect(skipped.sort()).toEqual(['FEEDBACK_EVENT_DISMISS', 'FEEDBACK_EVENT_IMPRESSION', 'FEEDBACK_EVENT_PURCHASE']);
  });

  test('the events filter picks what becomes an interaction, and a given rating is carried', async () => {
    const rows = await readAll(await write('filter.jsonl.gz', LOG), {
      events: ['FEEDBACK_EVENT_CLICK', 'FEEDBACK_EVENT_PURCHASE'],
      rating: 5,
    });
    expect(rows.map((r) => [r.line, (r as { item: string }).item, (r as { rating?: string }).rating])).toEqual([
      [2, 'i1', '5'],
      [3, 'i7', '5'],
      [5, 'i2', '5'],
    ]);
  });

  test('an event time of 0 (not given by the caller) falls back to the time the server received it', async () => {
    const [row] = await readAll(await write('zero.jsonl', [fb('u1', 'i1', 'FEEDBACK_EVENT_CLICK', 0)]));
    expect(row).toMatchObject({ timestamp: '250' });
  });

  test('broken lines and lines without an event are problems naming their line', async () => {
    const lines = [LOG[1]!, '{"user_id": "u9", "item_id"', LOG[4]!, JSON.stringify({ user_id: 'u1', item_id: 'i1' })];
    const rows = await readAll(await write('broken.jsonl', lines));
    const problems = rows.filter(isProblem);
    expect(problems).toEqual([
      expect.objectContaining({ line: 2, field: '(line)', message: expect.stringContaining('is not valid JSON') }),
      expect.objectContaining({ line: 4, field: 'event', message: 'is missing or not a feedback event name' }),
    ]);
    expect(rows.filter((r) => !isProblem(r)).map((r) => r.line)).toEqual([1, 3]);
  });
});

describe('reading and validating a feedback source with the ETL', () => {
  const cfg = EtlConfig.parse({ format: 'recbole' });

  test('ms timestamps become seconds, the rating is validated as any rating, skipped events are recorded', async () => {
    const file = await write('feedback.jsonl', LOG);
    const uri = 's3://recsys/serving-logs/feedback/chunk-1.jsonl';
    const source: SourceSpec = { uri, format: 'recsys-feedback', rating: 5 };
    const { rows, sources } = await readAndValidate([{ uri, local: file, source }], cfg);
    expect(rows.map((r) => [r.user, r.item, r.ts, r.rating, r.line])).toEqual([
      ['u1', 'i1', Math.floor((T0 + 1_999) / 1000), 5, 2],
      ['u3', 'i2', (T0 + 7_000) / 1000, 5, 5],
    ]);
    expect(sources[0]).toMatchObject({
      uri,
      records: 2,
      format: 'recsys-feedback',
      spec: source,
      skipped: { FEEDBACK_EVENT_IMPRESSION: 1, FEEDBACK_EVENT_PURCHASE: 1, FEEDBACK_EVENT_DISMISS: 1 },
    });
  });

  test('without a rating the interactions have none; a log of impressions only is not an empty file', async () => {
    const file = await write('impressions.jsonl', [LOG[0]!, LOG[0]!.replace('u1', 'u2')]);
    const uri = 's3://recsys/f/impressions.jsonl';
    const { rows, sources } = await readAndValidate(
      [{ uri, local: file, source: { uri, format: 'recsys-feedback' } }],
      cfg,
    );
    expect(rows).toEqual([]);
    expect(sources[0]).toMatchObject({ records: 0, skipped: { FEEDBACK_EVENT_IMPRESSION: 2 } });

    const clicks = await write('clicks.jsonl', [LOG[1]!]);
    const [row] = (await readAndValidate([{ uri, local: clicks, source: { uri, format: 'recsys-feedback' } }], cfg))
      .rows;
    expect(row!.rating).toBeNaN();
  });

  test('problems name the source file and line, with the feedback log field names', async () => {
    const lines = [
      LOG[1]!,
      'not json',
      fb('', 'i1', 'FEEDBACK_EVENT_CLICK', T0),
      fb('u1', 'i1', 'FEEDBACK_EVENT_CLICK', 5),
    ];
    const file = await write('bad-feedback.jsonl', lines);
    const uri = 's3://recsys/f/bad-feedback.jsonl';
    const err = await readAndValidate([{ uri, local: file, source: { uri, format: 'recsys-feedback' } }], cfg).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DataValidationError);
    const message = (err as Error).message;
    expect(message).toContain(`${uri}:2: field '(line)' is not valid JSON`);
    expect(message).toContain(`${uri}:3: field 'user_id' is empty`);
    expect(message).toContain(`${uri}:4: field 'event_time_ms' is before the minimum timestamp`);
  });

  test('a URI string next to a feedback spec is read with the config, exactly as before', async () => {
    const inter = await write('data.inter', [
      'user_id:token\titem_id:token\trating:float\ttimestamp:float',
      'u1\ti9\t3\t1600000000',
    ]);
    const feedback = await write('fb.jsonl', [LOG[1]!]);
    const { rows, sources } = await readAndValidate(
      [
        { uri: 's3://recsys/raw/data.inter', local: inter },
        {
          uri: 's3://recsys/f/fb.jsonl',
          local: feedback,
          source: { uri: 's3://recsys/f/fb.jsonl', format: 'recsys-feedback', rating: 4 },
        },
      ],
      cfg,
    );
    expect(rows.map((r) => [r.user, r.item, r.ts, r.rating])).toEqual([
      ['u1', 'i9', 1600000000, 3],
      ['u1', 'i1', Math.floor((T0 + 1_999) / 1000), 4],
    ]);
    expect(sources.map((s) => [s.format, s.spec])).toEqual([
      ['recbole', 's3://recsys/raw/data.inter'],
      ['recsys-feedback', { uri: 's3://recsys/f/fb.jsonl', format: 'recsys-feedback', rating: 4 }],
    ]);
  });
});

describe('source specs', () => {
  const cfg = EtlConfig.parse({ format: 'csv', columns: { user: 'uid' }, ratingRange: [1, 5] });
  const error = (sources: unknown, c: EtlConfig | undefined = cfg): ConfigError => {
    try {
      parseSources(sources, c);
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error('expected a ConfigError');
  };

  test('strings and specs are accepted; sourceUri gives the URI of either', () => {
    const input: SourceSpecInput[] = [
      's3://recsys/raw/a.csv',
      { uri: 's3://recsys/f.jsonl', format: 'recsys-feedback', events: ['FEEDBACK_EVENT_CLICK'], rating: 5 },
      { uri: 's3://recsys/b.tsv', format: 'tsv', columns: { item: 'movie' }, timestampUnit: 'ms' },
    ];
    const specs = parseSources(input, cfg);
    expect(specs.map(sourceUri)).toEqual(['s3://recsys/raw/a.csv', 's3://recsys/f.jsonl', 's3://recsys/b.tsv']);
  });

  test.each([
    [[{ uri: 's3://a', format: 'xml' }], "sources[0].format'", '"xml"'],
    [['s3://a', { uri: 's3://b', format: 'csv', ratings: 5 }], "sources[1].ratings' is not a source option", '5'],
    [
      ['s3://a', { uri: 's3://b', format: 'csv', rating: 5 }],
      "sources[1].rating' applies only to format recsys-feedback",
      '5',
    ],
    [
      [{ uri: 's3://b', format: 'tsv', events: ['FEEDBACK_EVENT_CLICK'] }],
      "sources[0].events' applies only",
      '["FEEDBACK_EVENT_CLICK"]',
    ],
    [
      [{ uri: 's3://b', format: 'recsys-feedback', events: ['FEEDBACK_EVENT_CLIK'] }],
      "sources[0].events[0]'",
      '"FEEDBACK_EVENT_CLIK"',
    ],
    [[{ uri: 's3://b', format: 'recsys-feedback', events: [] }], "sources[0].events'", '[]'],
    [
      [{ uri: 's3://b', format: 'recsys-feedback', columns: { user: 'u' } }],
      "sources[0].columns' is fixed",
      '{"user":"u"}',
    ],
    [
      [{ uri: 's3://b', format: 'recsys-feedback', rating: 9 }],
      "sources[0].rating' is outside the ETL config's ratingRange [1, 5]",
      '9',
    ],
    [[{ uri: 's3://b', format: 'recsys-feedback', timestampUnit: 'us' }], "sources[0].timestampUnit'", '"us"'],
    [[{ format: 'csv' }], "sources[0].uri'", 'undefined'],
    [['s3://a', 42], "sources[1]' must be a URI string or an object", '42'],
    [['s3://a', ''], "sources[1]' is an empty URI", '""'],
    [[], "'sources' must be a non-empty list", '[]'],
  ])('%j is rejected naming the source index, field and value', (sources, where, value) => {
    const err = error(sources);
    expect(err.message).toContain(where);
    expect(err.message).toContain(`(value: ${value === 'undefined' ? 'undefined' : value})`);
  });

  test('readings: a string is read as the config says; a spec with its own options, the config filling the rest', () => {
    expect(readingOf('s3://a', cfg)).toEqual({ format: 'csv', columns: cfg.columns, timestampUnit: 's' });
    expect(readingOf({ uri: 's3://a', format: 'tsv', timestampUnit: 'ms' }, cfg)).toEqual({
      format: 'tsv',
      columns: cfg.columns,
      timestampUnit: 'ms',
    });
    expect(readingOf({ uri: 's3://f', format: 'recsys-feedback' }, cfg)).toEqual({
      format: 'recsys-feedback',
      columns: { user: 'user_id', item: 'item_id', timestamp: 'event_time_ms', rating: null },
      timestampUnit: 'ms',
      events: ['FEEDBACK_EVENT_CLICK'],
    });
  });

  test('the address: URI strings add nothing (old versions keep theirs); own readings add digest and reading', () => {
    const str = { source: 's3://a' as SourceSpec, sha256: 'aaa' };
    const sameAsConfig = { source: { uri: 's3://a', format: 'csv' } as SourceSpec, sha256: 'aaa' };
    const click = { source: { uri: 's3://f', format: 'recsys-feedback' } as SourceSpec, sha256: 'fff' };
    const clickAndBuy = {
      source: { uri: 's3://f', format: 'recsys-feedback', events: ['FEEDBACK_EVENT_PURCHASE', 'FEEDBACK_EVENT_CLICK'] },
      sha256: 'fff',
    } as { source: SourceSpec; sha256: string };
    expect(sourcesKey([str], cfg)).toBeUndefined();
    expect(sourcesKey([str, sameAsConfig], cfg)).toBeUndefined();
    const withFeedback = sourcesKey([str, click], cfg);
    expect(withFeedback).toBeDefined();
    // Order changes no row, so it changes no version; a different reading or other bytes do.
    expect(sourcesKey([click, str], cfg)).toBe(withFeedback);
    expect(sourcesKey([str, clickAndBuy], cfg)).not.toBe(withFeedback);
    expect(sourcesKey([str, { ...click, sha256: 'ggg' }], cfg)).not.toBe(withFeedback);
    expect(sourcesKey([str, click, click], cfg)).not.toBe(withFeedback);
    // The event filter is a set.
    const buyAndClick = {
      ...clickAndBuy,
      source: {
        ...(clickAndBuy.source as object),
        events: ['FEEDBACK_EVENT_CLICK', 'FEEDBACK_EVENT_PURCHASE'],
      } as SourceSpec,
    };
    expect(sourcesKey([str, buyAndClick], cfg)).toBe(sourcesKey([str, clickAndBuy], cfg));
  });
});

describe('manifest sources', () => {
  const base = {
    schemaVersion: 1,
    name: 'd',
    version: 'v',
    uri: 's3://recsys/datasets/d/v/',
    createdAt: '2026-01-01T00:00:00Z',
    config: EtlConfig.parse({ format: 'csv' }),
    files: {},
    schema: {},
    counts: { raw: 1, duplicatesDropped: 0, interactions: 1, users: 1, items: 1, train: 1, valid: 0, test: 0 },
    split: { validStart: 0, testStart: 0, rule: '' },
    stats: {
      interactionsPerUser: { min: 1, p50: 1, mean: 1, p90: 1, max: 1 },
      interactionsPerItem: { min: 1, p50: 1, mean: 1, p90: 1, max: 1 },
      itemTop1pctShare: 1,
      itemTop10pctShare: 1,
      ratingHistogram: {},
      dailyVolume: { min: 1, p50: 1, mean: 1, p90: 1, max: 1 },
      timestamp: { min: 0, max: 0 },
    },
  };

  test('a manifest written before sources had formats still parses, and gives its URIs as sources', () => {
    const old = Manifest.parse({
      ...base,
      sources: [{ uri: 's3://recsys/raw/a.csv', sha256: 'x', bytes: 1, records: 1 }],
    });
    expect(manifestSources(old)).toEqual(['s3://recsys/raw/a.csv']);
  });

  test('a new one gives back the specs it was built from', () => {
    const spec = { uri: 's3://recsys/f.jsonl', format: 'recsys-feedback' as const, rating: 5 };
    const m = Manifest.parse({
      ...base,
      sources: [
        {
          uri: 's3://recsys/raw/a.csv',
          sha256: 'x',
          bytes: 1,
          records: 1,
          format: 'csv',
          spec: 's3://recsys/raw/a.csv',
        },
        {
          uri: spec.uri,
          sha256: 'y',
          bytes: 1,
          records: 0,
          format: 'recsys-feedback',
          spec,
          skipped: { FEEDBACK_EVENT_IMPRESSION: 3 },
        },
      ],
    });
    expect(manifestSources(m)).toEqual(['s3://recsys/raw/a.csv', spec]);
  });
});
