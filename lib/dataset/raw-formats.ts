/**
 * Readers of raw interaction logs. Each yields one record per data line with the canonical fields still as text, plus
 * the 1-based line (or Parquet row) it came from, so validation can name the exact place of a problem.
 *
 * Supported: generic CSV / TSV (with a header) and JSON lines with a column mapping, Parquet, and the original
 * formats of public data sets: MovieLens-1M (`UserID::MovieID::Rating::Timestamp`), MovieLens-100K `u.data`
 * (tab-separated, no header), RecBole atomic files (`.inter`, typed header `user_id:token ...`) and Amazon reviews
 * JSON lines (2014/2018 `reviewerID/asin/overall/unixReviewTime` and 2023 `user_id/parent_asin/rating/timestamp`).
 */
import { createReadStream } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { z } from 'zod';

export const RAW_FORMATS = [
  'csv',
  'tsv',
  'jsonl',
  'parquet',
  'movielens-1m',
  'movielens-100k',
  'recbole',
  'amazon-jsonl',
] as const;
export type RawFormat = (typeof RAW_FORMATS)[number];

export const ColumnMapping = z
  .object({
    user: z.string().default('user_id'),
    item: z.string().default('item_id'),
    timestamp: z.string().default('timestamp'),
    /** Optional: logs of implicit feedback have no rating. */
    rating: z.string().optional(),
  })
  .strict();
export type ColumnMapping = z.infer<typeof ColumnMapping>;

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

/**
 * The file's lines in batches (with the number of the batch's first line). Batches, not single lines: an async
 * iteration per line costs more than parsing the line.
 */
async function* lineBatches(file: string): AsyncGenerator<{ first: number; lines: string[] }> {
  let rest = '';
  let next = 1;
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: BATCH_BYTES })) {
    const lines = (rest + (chunk as string)).split('\n');
    rest = lines.pop()!;
    if (lines.length === 0) continue;
    yield { first: next, lines };
    next += lines.length;
  }
  if (rest !== '') yield { first: next, lines: [rest] };
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
  let index: Record<keyof ColumnMapping, number> | undefined;
  const resolve = (cols: string[], line: number): RawLineProblem | undefined => {
    const pos = (name: string | undefined) => (name === undefined ? -1 : cols.indexOf(name));
    index = {
      user: pos(spec.mapping.user),
      item: pos(spec.mapping.item),
      timestamp: pos(spec.mapping.timestamp),
      rating: pos(spec.mapping.rating),
    };
    for (const key of ['user', 'item', 'timestamp', 'rating'] as const) {
      const wanted = spec.mapping[key];
      if (wanted !== undefined && index[key] < 0)
        return { line, field: wanted, value: cols.join(spec.delimiter), message: `column is missing from the header` };
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

async function* readJsonLines(
  file: string,
  pick: (obj: Record<string, unknown>) => Omit<RawRecord, 'line'>,
): AsyncGenerator<RawEntry[]> {
  for await (const { first, lines } of lineBatches(file)) {
    const batch: RawEntry[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = first + i;
      const text = lines[i]!;
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
      batch.push({ line, ...pick(obj as Record<string, unknown>) });
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
    rating: mapping.rating === undefined ? undefined : text(o[mapping.rating]),
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

async function* readParquet(file: string, mapping: ColumnMapping): AsyncGenerator<RawEntry[]> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const described = await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet($1)`, [file]);
    const columns = described.getRowObjects().map((r) => String(r.column_name));
    for (const key of ['user', 'item', 'timestamp', 'rating'] as const) {
      const wanted = mapping[key];
      if (wanted !== undefined && !columns.includes(wanted)) {
        yield [
          { line: 0, field: wanted, value: columns.join(','), message: 'column is missing from the Parquet schema' },
        ];
        return;
      }
    }
    const q = (c: string | undefined) => (c === undefined ? 'NULL' : `CAST("${c.replace(/"/g, '""')}" AS VARCHAR)`);
    const result = await conn.stream(
      `SELECT ${q(mapping.user)}, ${q(mapping.item)}, ${q(mapping.timestamp)}, ${q(mapping.rating)} FROM read_parquet($1)`,
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
export function readRaw(file: string, format: RawFormat, mapping: ColumnMapping): AsyncGenerator<RawEntry[]> {
  const withRating: ColumnMapping = { ...mapping, rating: mapping.rating ?? 'rating' };
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
        mapping: withRating,
      });
    case 'movielens-100k':
      return readDelimited(file, {
        delimiter: '\t',
        names: ['user_id', 'item_id', 'rating', 'timestamp'],
        mapping: withRating,
      });
    case 'recbole':
      return readDelimited(file, { delimiter: '\t', headerName: (h) => h.split(':')[0]!, mapping: withRating });
    case 'amazon-jsonl':
      return readJsonLines(file, amazonPick);
  }
}
