/**
 * The request log's write-ahead store on local disk: every sealed chunk is written here before it is uploaded, and
 * removed once the object store has it, so a process killed with SIGKILL (or a machine that loses power) loses only
 * the records it had not sealed yet. One file per chunk, named `<sealed-at-ms>-<server-id>-<seq>.chunk` so that
 * sorting the names gives the oldest first; each holds a one-line JSON header (key, kind, records, sha256 of the body)
 * and then the chunk's body. Files are written to a temporary name, fsynced, renamed and the directory fsynced, so a
 * crash never leaves half a chunk under a final name.
 *
 * Files found in the directory at start (left by a process that crashed or could not reach the store before it
 * stopped) are adopted and shipped too, as is a complete temporary file whose writer died before renaming it. A file
 * that cannot be a chunk (empty, truncated, a bad header, a checksum that does not match) is renamed `<name>.bad` and
 * left for a person to look at, and shipping goes on with the others. Two servers sharing the directory may both ship
 * the same file: the key is the same, so the second upload overwrites the object with identical bytes, and a file
 * another server already shipped and deleted is simply skipped.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { LogChunk } from './log-chunks';
import type { LogKind } from './log-records';

const SUFFIX = '.chunk';
export const BAD_SUFFIX = '.bad';
/** `<final name>.<pid>.tmp` */
const TMP = /^(.+\.chunk)\.(\d+)\.tmp$/;

interface Header {
  key: string;
  kind: LogKind;
  records: number;
  sealedAtMs: number;
  /** Of the body; absent in files written before it was recorded. */
  sha256?: string;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The chunk in a spill file's text, or a string saying why it is not one. */
export function parseSpillFile(text: string): LogChunk | string {
  if (text.length === 0) return 'empty file';
  const nl = text.indexOf('\n');
  if (nl < 0) return 'no header line';
  let header: Partial<Header>;
  try {
    header = JSON.parse(text.slice(0, nl)) as Partial<Header>;
  } catch {
    return 'the header line is not JSON';
  }
  const { key, kind, records, sealedAtMs } = header;
  // The key becomes an object key under the log prefix: nothing absolute, nothing that climbs out of it.
  if (typeof key !== 'string' || !key.endsWith('.jsonl') || key.startsWith('/') || key.split('/').includes('..'))
    return `bad key in the header: ${JSON.stringify(key)}`;
  if (kind !== 'recommend' && kind !== 'feedback') return `bad kind in the header: ${JSON.stringify(kind)}`;
  if (typeof records !== 'number' || !Number.isInteger(records) || records < 1)
    return `bad record count in the header: ${JSON.stringify(records)}`;
  if (typeof sealedAtMs !== 'number') return `bad sealedAtMs in the header: ${JSON.stringify(sealedAtMs)}`;
  const body = text.slice(nl + 1);
  if (header.sha256 !== undefined && header.sha256 !== sha256(body))
    return `the body's sha256 does not match the header's (truncated or changed on disk)`;
  const lines = body.endsWith('\n') ? body.slice(0, -1).split('\n').length : -1;
  if (lines !== records)
    return `the header says ${records} records, the body has ${lines < 0 ? 'no final newline' : `${lines} lines`}`;
  return { key, kind, records, sealedAtMs, body };
}

export class SpillDir {
  /** File names, oldest first. */
  private readonly names: string[] = [];

  /** `onBad`: told about every file set aside (the name it now has, and why). */
  constructor(
    readonly dir: string,
    private readonly onBad: (file: string, reason: string) => void = () => undefined,
  ) {}

  get size(): number {
    return this.names.length;
  }

  /**
   * Takes over the chunks already in the directory (older than anything this process will write), including complete
   * temporary files of writers that died before renaming them. Run before this process writes anything.
   */
  async adopt(): Promise<number> {
    await fs.mkdir(this.dir, { recursive: true });
    for (const name of await fs.readdir(this.dir)) {
      const m = TMP.exec(name);
      // At adopt time none of ours exist yet: a file with our pid is a dead predecessor's (containers reuse pids).
      if (!m || (Number(m[2]) !== process.pid && alive(Number(m[2])))) continue;
      const text = await fs.readFile(path.join(this.dir, name), 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      const chunk = parseSpillFile(text);
      if (typeof chunk === 'string') await this.setAside(name, `unfinished write: ${chunk}`);
      else await fs.rename(path.join(this.dir, name), path.join(this.dir, m[1]!)).catch(() => undefined);
    }
    const found = (await fs.readdir(this.dir)).filter((n) => n.endsWith(SUFFIX)).sort();
    const known = new Set(this.names);
    const fresh = found.filter((n) => !known.has(n));
    this.names.unshift(...fresh);
    this.names.sort();
    return fresh.length;
  }

  /** Writes the chunk durably (fsync of the file, then of the directory after the rename). */
  async write(chunk: LogChunk): Promise<void> {
    const name = `${String(chunk.sealedAtMs).padStart(15, '0')}-${path.posix.basename(chunk.key, '.jsonl')}${SUFFIX}`;
    const header: Header = {
      key: chunk.key,
      kind: chunk.kind,
      records: chunk.records,
      sealedAtMs: chunk.sealedAtMs,
      sha256: sha256(chunk.body),
    };
    await fs.mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, name);
    const tmp = `${file}.${process.pid}.tmp`;
    const handle = await fs.open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(header)}\n${chunk.body}`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
    await this.syncDir();
    this.names.push(name);
  }

  /**
   * The oldest spilled chunk, or undefined when none is left. Skips files that another process took, and sets aside
   * files that are not chunks.
   */
  async oldest(): Promise<{ name: string; chunk: LogChunk } | undefined> {
    while (this.names.length > 0) {
      const name = this.names[0]!;
      let text: string;
      try {
        text = await fs.readFile(path.join(this.dir, name), 'utf8');
      } catch (err) {
        if (!isMissing(err)) throw err;
        this.names.shift();
        continue;
      }
      const chunk = parseSpillFile(text);
      if (typeof chunk !== 'string') return { name, chunk };
      // Counted in `size` until it is renamed, so close() waits for the rename rather than reporting before it.
      try {
        await this.setAside(name, chunk);
      } finally {
        this.forget(name);
      }
    }
    return undefined;
  }

  async remove(name: string): Promise<void> {
    await fs.rm(path.join(this.dir, name), { force: true });
    this.forget(name);
  }

  private forget(name: string): void {
    const i = this.names.indexOf(name);
    if (i >= 0) this.names.splice(i, 1);
  }

  private async setAside(name: string, reason: string): Promise<void> {
    const bad = `${name}${BAD_SUFFIX}`;
    try {
      await fs.rename(path.join(this.dir, name), path.join(this.dir, bad));
    } catch (err) {
      if (isMissing(err)) return; // another server sharing the directory got there first
      throw err;
    }
    this.onBad(path.join(this.dir, bad), reason);
  }

  /** Makes the rename itself durable (a crash after rename() alone may forget it). */
  private async syncDir(): Promise<void> {
    const dir = await fs.open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
