/**
 * The header of a usearch index file, read (and its metric rewritten) without loading the index. usearch's own load
 * takes the metric and the dimensions from the file and never compares them with the index it loads into, so a file
 * built for another metric or another model would load "fine" and serve wrong scores: we read them first and say
 * what does not match. Rewriting the metric is how an index whose graph was built by angle is searched by inner
 * product (serving/retrieval/hnsw.ts): the graph itself does not record the metric it was built with.
 *
 * Layout (usearch 2.x, index_dense.hpp save_to_stream): u32 rows, u32 bytes per vector, the vectors, then the
 * 64-byte dense head: "usearch" (7 bytes), u16 version major/minor/patch, u8 metric kind ('i' = inner product,
 * 'c' = cosine), u8 scalar kind (11 = f32), u8 key kind, u8 slot kind, u64 vectors present, u64 deleted, u64
 * dimensions, bool multi. The vectors are stored as given (cosine does not normalise them).
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

export interface IndexFileHeader {
  versionMajor: number;
  /** usearch's metric letter: 'i' inner product, 'c' cosine, 'e' squared L2, ... */
  metric: string;
  /** 11 = f32 (usearch's scalar_kind_t). */
  scalar: number;
  size: number;
  deleted: number;
  dims: number;
}

export const F32_SCALAR = 11;
const MAGIC = 'usearch';
const HEAD_BYTES = 64;
const METRIC_AT = 13;

/** Where the head starts in the open file `fd`, and the head; throws when it is not a usearch index. */
function head(fd: number): { at: number; bytes: Buffer } {
  const fileBytes = fstatSync(fd).size;
  const matrix = Buffer.alloc(8);
  if (readSync(fd, matrix, 0, 8, 0) < 8) throw new Error(`${fileBytes} bytes: not a usearch index`);
  const at = 8 + matrix.readUInt32LE(0) * matrix.readUInt32LE(4);
  if (at + HEAD_BYTES > fileBytes)
    throw new Error(`its first 8 bytes put the header past its end (${fileBytes} bytes): not a usearch index`);
  const bytes = Buffer.alloc(HEAD_BYTES);
  readSync(fd, bytes, 0, HEAD_BYTES, at);
  if (bytes.toString('latin1', 0, MAGIC.length) !== MAGIC)
    throw new Error(`no usearch header at byte ${at}: not a usearch index`);
  return { at, bytes };
}

/**
 * The header of `file`; throws when it is not a usearch index (the caller names the file). Synchronous: two small
 * reads, and the build path (setIndexMetric) runs inside a synchronous build anyway.
 */
export function readIndexHeader(file: string): IndexFileHeader {
  const fd = openSync(file, 'r');
  try {
    const { bytes } = head(fd);
    return {
      versionMajor: bytes.readUInt16LE(7),
      metric: String.fromCharCode(bytes.readUInt8(METRIC_AT)),
      scalar: bytes.readUInt8(14),
      size: Number(bytes.readBigUInt64LE(17)),
      deleted: Number(bytes.readBigUInt64LE(25)),
      dims: Number(bytes.readBigUInt64LE(33)),
    };
  } finally {
    closeSync(fd);
  }
}

/** Rewrites the metric letter of `file` in place ('i' inner product, 'c' cosine). */
export function setIndexMetric(file: string, metric: 'i' | 'c'): void {
  const fd = openSync(file, 'r+');
  try {
    const { at } = head(fd);
    writeSync(fd, Buffer.from(metric, 'latin1'), 0, 1, at + METRIC_AT);
  } finally {
    closeSync(fd);
  }
}
