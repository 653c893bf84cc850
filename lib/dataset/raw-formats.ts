/**
 * Readers of raw interaction logs. Each yields one record per data line with the canonical fields still as text, plus
 * the 1-based line (or Parquet row) it came from, so validation can name the exact place of a problem.
 *
 * Supported: generic CSV / TSV (with a header) and JSON lines with a column mapping, Parquet, and the original
 * formats of public data sets: MovieLens-1M (`UserID::MovieID::Rating::Timestamp`), MovieLens-100K `u.data`
 * (tab-separated, no header), RecBole atomic files (`.inter`, typed header `user_id:token ...`) and Amazon reviews
 * JSON lines (2014/2018 `reviewerID/asin/overall/unixReviewTime` and 2023 `user_id/parent_asin/rating/timestamp`);
 * and the serving tier's own feedback log (`recsys-feedback`, serving/log-records.ts), so what users did with the
 * recommendations becomes training data.
 *
 * Nothing is dropped unseen: a `rating` column is read (and validated) without a mapping, text must be valid UTF-8
 * (an invalid line is a problem naming it, never a U+FFFD in an id), and gzip input named `*.gz` is decompressed while
 * it streams; compressed input under a plain name is a problem that says so rather than binary in an error message.
 */
import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import { z } from 'zod';
import type { FeedbackEventName } from '../feedback-events';

export const RAW_FORMATS = [
  'csv',
  'tsv',
  'jsonl',
  'parquet',
  'movielens-1m',
  'movielens-100k',
  'recbole',
  'amazon-jsonl',
  'recsys-feedback',
] as const;
export type RawFormat = (typeof RAW_FORMATS)[number];

// A filter naming an event not in FEEDBACK_EVENTS is a typo that would silently skip every line.
export { FEEDBACK_EVENTS, type FeedbackEventName } from '../feedback-events';
/** An impression is not a preference and a dismissal is a negative one: only clicks are interactions by default. */
export const DEFAULT_FEEDBACK_EVENTS: readonly FeedbackEventName[] = ['FEEDBACK_EVENT_CLICK'];

/** Where the canonical fields are in a feedback log line (fixed: the log is ours). */
export const FEEDBACK_COLUMNS = { user: 'user_id', item: 'item_id', timestamp: 'event_time_ms' } as const;

/** Reading options that only some formats have. */
export interface ReadOptions {
  /** recsys-feedback: the events that become interactions (default DEFAULT_FEEDBACK_EVENTS). */
  events?: readonly string[];
  /** recsys-feedback: the rating every interaction carries; none when unset. */
  rating?: number;
  /** recsys-feedback: told of each line whose event is not in `events` (skipped, not a problem). */
  onSkip?: (event: string) => void;
}

/** The conventional name of the rating column, read whenever a file has it and the mapping does not say otherwise. */
export const RATING_COLUMN = 'rating';

export const ColumnMapping = z
  .object({
    user: z.string().default('user_id'),
    item: z.string().default('item_id'),
    timestamp: z.string().default('timestamp'),
    /**
     * Unset: the column named `rating` when the file has one (implicit-feedback logs have none); null: the file's
     * ratings are deliberately ignored. Never silently: a `rating` column is validated unless mapped away with null.
     */
    rating: z.string().nullable().optional(),
  })
  .strict();
export type ColumnMapping = z.infer<typeof ColumnMapping>;

/** The rating column to read, given the columns a file has. */
function ratingColumn(mapping: ColumnMapping, columns: readonly string[]): string | undefined {
  if (mapping.rating === null) return undefined;
  if (mapping.rating !== undefined) return mapping.rating;
  return columns.includes(RATING_COLUMN) ? RATING_COLUMN : undefined;
}

/** A raw record before validation: canonical field names, values as found in the file. */
export interface RawRecord {
  line: number;
  user: string | undefined;
  item: string | undefined;
  timestamp: string | undefined;
  rating: string | undefined;
}

/** A line that cannot be split into fields at all (wrong field count, broken JSON). */
export interface RawLineProblem {
  line: number;
  field: string;
  value: string;
  message: string;
}

export type RawEntry = RawRecord | RawLineProblem;
export const isProblem = (e: RawEntry): e is RawLineProblem => 'message' in e;

const BATCH_BYTES = 1 << 20;

/** A decoded line, or the problem that stopped it from being one (invalid UTF-8). */
type Line = string | RawLineProblem;

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
/** Formats we do not decompress, recognised so the error names them instead of quoting their bytes. */
const OTHER_COMPRESSION: [string, Buffer][] = [
  ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
  ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['bzip2', Buffer.from('BZh')],
  ['zip', Buffer.from([0x50, 0x4b, 0x03, 0x04])],
];
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

const isGzipName = (file: string) => /\.gz$/i.test(file);

async function fileHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const fileProblem = (message: string): RawLineProblem => ({ line: 1, field: '(file)', value: '', message });

/** How a text file is compressed, judged by its first bytes and its name; a problem when the two disagree. */
function compressionOf(file: string, head: Buffer): { gzip: boolean } | RawLineProblem {
  const gzipped = head.subarray(0, 2).equals(GZIP_MAGIC);
  if (gzipped && !isGzipName(file))
    return fileProblem(
      'is gzip-compressed (it starts with the bytes 1f 8b) but its name does not end in .gz: give it a .gz name to ' +
        'have it decompressed, or decompress it first',
    );
  if (!gzipped && isGzipName(file)) return fileProblem('is named .gz but is not gzip-compressed');
  for (const [name, magic] of OTHER_COMPRESSION)
    if (head.subarray(0, magic.length).equals(magic))
      return fileProblem(`is ${name}-compressed; only gzip (.gz) input is decompressed: decompress it first`);
  return { gzip: gzipped };
}

/** Offset of the first byte that is not part of a well-formed UTF-8 sequence, or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length;) {
    const c = b[i]!;
    if (c < 0x80) {
      i += 1;
      continue;
    }
    const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
    if (n === 0 || i + n >= b.length) return i;
    for (let k = 1; k <= n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    const c1 = b[i + 1]!;
    // Overlong forms, UTF-16 surrogates and code points above U+10FFFF.
    if (
      (c === 0xe0 && c1 < 0xa0) ||
      (c === 0xed && c1 > 0x9f) ||
      (c === 0xf0 && c1 < 0x90) ||
      (c === 0xf4 && c1 > 0x8f)
    )
      return i;
    i += n + 1;
  }
  return -1;
}

function invalidUtf8(bytes: Buffer, line: number): RawLineProblem {
  const at = Math.max(0, firstInvalidUtf8(bytes));
  return {
    line,
    field: '(line)',
    // The valid text before the bad byte shows where it is without quoting binary.
    value: bytes.subarray(0, at).toString('utf8').slice(-120),
    message:
      `is not valid UTF-8 (byte 0x${bytes[at]!.toString(16).padStart(2, '0')} at byte ${at + 1} of the line): ` +
      'convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)',
  };
}

/** Splits complete lines (no trailing newline) and decodes them; whole-batch validation first, as it is the norm. */
function decodeLines(body: Buffer, first: number): Line[] {
  if (isUtf8(body)) return body.toString('utf8').split('\n');
  const out: Line[] = [];
  for (let from = 0, line = first; ; line++) {
    const nl = body.indexOf(0x0a, from);
    const bytes = body.subarray(from, nl < 0 ? body.length : nl);
    out.push(isUtf8(bytes) ? bytes.toString('utf8') : invalidUtf8(bytes, line));
    if (nl < 0) return out;
    from = nl + 1;
  }
}

/**
 * The file's lines in batches (with the number of the batch's first line). Batches, not single lines: an async
 * iteration per line costs more than parsing the line. Bytes are split at newlines before decoding (0x0a is never
 * inside a UTF-8 sequence), so an invalid line is found with its number.
 */
async function* lineBatches(file: string): AsyncGenerator<{ first: number; lines: Line[] }> {
  const compression = compressionOf(file, await fileHead(file));
  if ('message' in compression) {
    yield { first: 1, lines: [compression] };
    return;
  }
  const raw = createReadStream(file, { highWaterMark: BATCH_BYTES });
  let source: AsyncIterable<Buffer> = raw;
  if (compression.gzip) {
    const gunzip = createGunzip({ chunkSize: BATCH_BYTES });
    raw.on('error', (err) => gunzip.destroy(err));
    source = raw.pipe(gunzip);
  }
  let rest: Buffer = Buffer.alloc(0);
  let next = 1;
  let atStart = true;
  try {
    for await (const chunk of source) {
      let buf: Buffer = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
      if (atStart && buf.length >= UTF8_BOM.length) {
        if (buf.subarray(0, UTF8_BOM.length).equals(UTF8_BOM)) buf = buf.subarray(UTF8_BOM.length);
        atStart = false;
      }
      const end = buf.lastIndexOf(0x0a);
      if (end < 0) {
        rest = buf;
        continue;
      }
      rest = buf.subarray(end + 1);
      const lines = decodeLines(buf.subarray(0, end), next);
      yield { first: next, lines };
      next += lines.length;
    }
  } catch (err) {
    if (!compression.gzip) throw err;
    const message = `is not a readable gzip stream after line ${next - 1}: ${(err as Error).message}`;
    yield { first: next, lines: [{ line: next, field: '(file)', value: '', message }] };
    return;
  } finally {
    raw.destroy();
  }
  if (rest.length > 0) yield { first: next, lines: decodeLines(rest, next) };
}

/** Splits one CSV line (RFC 4180 quoting within the line). */
export function splitCsvLine(text: string, delimiter: string): string[] {
  if (!text.includes('"')) return text.split(delimiter);
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (text.startsWith(delimiter, i)) {
      out.push(field);
      field = '';
      i += delimiter.length - 1;
    } else field += ch;
  }
  if (quoted) throw new Error('unterminated quoted field');
  out.push(field);
  return out;
}

interface DelimitedSpec {
  delimiter: string;
  /** Column names when the file has no header; undefined means the first line is the header. */
  names?: string[];
  /** Turns header names into column names (RecBole's `user_id:token` becomes `user_id`). */
  headerName?: (raw: string) => string;
  mapping: ColumnMapping;
}

async function* readDelimited(file: string, spec: DelimitedSpec): AsyncGenerator<RawEntry[]> {
  let names = spec.names;
  let index: Record<'user' | 'item' | 'timestamp' | 'rating', number> | undefined;
  const resolve = (cols: string[], line: number): RawLineProblem | undefined => {
    const wanted = { ...spec.mapping, rating: ratingColumn(spec.mapping, cols) };
    const pos = (name: string | undefined) => (name === undefined ? -1 : cols.indexOf(name));
    index = {
      user: pos(wanted.user),
      item: pos(wanted.item),
      timestamp: pos(wanted.timestamp),
      rating: pos(wanted.rating),
    };
    for (const key of ['user', 'item', 'timestamp', 'rating'] as const) {
      const name = wanted[key];
      if (name !== undefined && index[key] < 0)
        return { line, field: name, value: cols.join(spec.delimiter), message: `column is missing from the header` };
    }
    return undefined;
  };
  if (names) {
    const problem = resolve(names, 0);
    if (problem) throw new Error(`format definition: ${problem.message}`);
  }
  for await (const { first, lines } of lineBatches(file)) {
    const batch: RawEntry[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = first + i;
      let text = lines[i]!;
      if (typeof text !== 'string') {
        // Without a readable header no line after it can be read either.
        if (!names) {
          yield [text];
          return;
        }
        batch.push(text);
        continue;
      }
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (text.trim() === '') continue;
      let fields: string[];
      try {
        fields = splitCsvLine(text, spec.delimiter);
      } catch (err) {
        batch.push({ line, field: '(line)', value: text.slice(0, 200), message: (err as Error).message });
        continue;
      }
      if (!names) {
        names = fields.map((f) => (spec.headerName ? spec.headerName(f.trim()) : f.trim()));
        const problem = resolve(names, line);
        if (problem) {
          yield [problem];
          return;
        }
        continue;
      }
      if (fields.length !== names.length) {
        batch.push({
          line,
          field: '(line)',
          value: text.slice(0, 200),
          message: `has ${fields.length} fields, expected ${names.length} (${names.join(spec.delimiter)})`,
        });
        continue;
      }
      const ix = index!;
      batch.push({
        line,
        user: ix.user < 0 ? undefined : fields[ix.user],
        item: ix.item < 0 ? undefined : fields[ix.item],
        timestamp: ix.timestamp < 0 ? undefined : fields[ix.timestamp],
        rating: ix.rating < 0 ? undefined : fields[ix.rating],
      });
    }
    yield batch;
  }
}

/** What a JSON object becomes: a record's fields, a problem with the line, or null for a line skipped on purpose. */
type JsonPick = (obj: Record<string, unknown>, line: number) => Omit<RawRecord, 'line'> | RawLineProblem | null;

async function* readJsonLines(file: string, pick: JsonPick): AsyncGenerator<RawEntry[]> {
  for await (const { first, lines } of lineBatches(file)) {
    const batch: RawEntry[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = first + i;
      const text = lines[i]!;
      if (typeof text !== 'string') {
        batch.push(text);
        continue;
      }
      if (text.trim() === '') continue;
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (err) {
        batch.push({
          line,
          field: '(line)',
          value: text.slice(0, 200),
          message: `is not valid JSON: ${(err as Error).message}`,
        });
        continue;
      }
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
        batch.push({ line, field: '(line)', value: text.slice(0, 200), message: 'is not a JSON object' });
        continue;
      }
      const picked = pick(obj as Record<string, unknown>, line);
      if (picked === null) continue;
      batch.push('message' in picked ? picked : { line, ...picked });
    }
    yield batch;
  }
}

/** JSON values as text; nested objects keep their JSON form so an error message shows what was there. */
export function text(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

function jsonPick(mapping: ColumnMapping) {
  return (o: Record<string, unknown>) => ({
    user: text(o[mapping.user]),
    item: text(o[mapping.item]),
    timestamp: text(o[mapping.timestamp]),
    // JSON lines have no header: the conventional key is read from each record that has it.
    rating: mapping.rating === null ? undefined : text(o[mapping.rating ?? RATING_COLUMN]),
  });
}

/** Amazon reviews: the 2014/2018 dumps (seconds) and the 2023 dump (milliseconds, normalised here to seconds). */
function amazonPick(o: Record<string, unknown>): Omit<RawRecord, 'line'> {
  if ('reviewerID' in o) {
    return { user: text(o.reviewerID), item: text(o.asin), timestamp: text(o.unixReviewTime), rating: text(o.overall) };
  }
  const ms = o.timestamp;
  return {
    user: text(o.user_id),
    item: text(o.parent_asin ?? o.asin),
    timestamp: typeof ms === 'number' ? String(Math.floor(ms / 1000)) : text(ms),
    rating: text(o.rating),
  };
}

/**
 * The feedback log (serving/log-records.ts FeedbackLogRecord). The time is the event's own (`event_time_ms`; the
 * receive time `time_ms` when a writer left it 0); events outside the filter are skipped and counted, not problems:
 * a log of impressions and clicks is read for its clicks. A fixed rating, when given, keeps a dataset of explicit
 * ratings in its rating vocabulary (training ignores ratings).
 */
function feedbackPick(options: ReadOptions): JsonPick {
  const events = new Set(options.events ?? DEFAULT_FEEDBACK_EVENTS);
  const rating = options.rating === undefined ? undefined : String(options.rating);
  return (o, line) => {
    const event = o.event;
    if (typeof event !== 'string' || event === '')
      return { line, field: 'event', value: text(event) ?? '', message: 'is missing or not a feedback event name' };
    if (!events.has(event)) {
      options.onSkip?.(event);
      return null;
    }
    const at = o.event_time_ms === 0 || o.event_time_ms === undefined ? o.time_ms : o.event_time_ms;
    return { user: text(o.user_id), item: text(o.item_id), timestamp: text(at), rating };
  };
}

async function* readParquet(file: string, mapping: ColumnMapping): AsyncGenerator<RawEntry[]> {
  // A compressed Parquet file would otherwise fail deep inside DuckDB with a message about magic bytes.
  const head = await fileHead(file);
  const compression = compressionOf(file, head);
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) {
    yield [fileProblem('is gzip-compressed: Parquet compresses its pages itself and is read as is; decompress it')];
    return;
  }
  if ('message' in compression) {
    yield [compression];
    return;
  }
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const described = await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet($1)`, [file]);
    const columns = described.getRowObjects().map((r) => String(r.column_name));
    const wanted = { ...mapping, rating: ratingColumn(mapping, columns) };
    for (const key of ['user', 'item', 'timestamp', 'rating'] as const) {
      const name = wanted[key];
      if (name !== undefined && !columns.includes(name)) {
        yield [
          { line: 0, field: name, value: columns.join(','), message: 'column is missing from the Parquet schema' },
        ];
        return;
      }
    }
    const q = (c: string | undefined) => (c === undefined ? 'NULL' : `CAST("${c.replace(/"/g, '""')}" AS VARCHAR)`);
    const result = await conn.stream(
      `SELECT ${q(wanted.user)}, ${q(wanted.item)}, ${q(wanted.timestamp)}, ${q(wanted.rating)} FROM read_parquet($1)`,
      [file],
    );
    let row = 0;
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      yield chunk.getRows().map((r) => {
        row += 1;
        return { line: row, user: text(r[0]), item: text(r[1]), timestamp: text(r[2]), rating: text(r[3]) };
      });
    }
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/** Streams the records of one raw file in the given format, in batches. */
export function readRaw(
  file: string,
  format: RawFormat,
  mapping: ColumnMapping,
  options: ReadOptions = {},
): AsyncGenerator<RawEntry[]> {
  switch (format) {
    case 'csv':
      return readDelimited(file, { delimiter: ',', mapping });
    case 'tsv':
      return readDelimited(file, { delimiter: '\t', mapping });
    case 'jsonl':
      return readJsonLines(file, jsonPick(mapping));
    case 'parquet':
      return readParquet(file, mapping);
    case 'movielens-1m':
      return readDelimited(file, {
        delimiter: '::',
        names: ['user_id', 'item_id', 'rating', 'timestamp'],
        mapping,
      });
    case 'movielens-100k':
      return readDelimited(file, {
        delimiter: '\t',
        names: ['user_id', 'item_id', 'rating', 'timestamp'],
        mapping,
      });
    case 'recbole':
      // RecBole files of implicit feedback have no rating column: the header says whether there is one.
      return readDelimited(file, { delimiter: '\t', headerName: (h) => h.split(':')[0]!, mapping });
    case 'amazon-jsonl':
      return readJsonLines(file, amazonPick);
    case 'recsys-feedback':
      return readJsonLines(file, feedbackPick(options));
  }
}
