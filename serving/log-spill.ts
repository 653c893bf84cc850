/**
 * Chunks that could not be uploaded yet, kept on local disk (one file per chunk) so that neither memory nor records are
 * lost while the object store is away. Files are named `<sealed-at-ms>-<server-id>-<seq>.chunk` so that sorting the
 * names gives the oldest first; each holds a one-line JSON header (key, kind, records) and then the chunk's body.
 * Files are written to a temporary name and renamed, so a crash never leaves half a chunk to be shipped.
 *
 * Files found in the directory at start (left by a process that crashed or could not reach the store before it
 * stopped) are adopted and shipped too. Two servers sharing the directory may both ship the same file: the key is
 * the same, so the second upload overwrites the object with identical bytes, and a file another server already
 * shipped and deleted is simply skipped.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { LogChunk } from './log-chunks';
import type { LogKind } from './log-records';

const SUFFIX = '.chunk';

interface Header {
  key: string;
  kind: LogKind;
  records: number;
  sealedAtMs: number;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

export class SpillDir {
  /** File names, oldest first. */
  private readonly names: string[] = [];

  constructor(readonly dir: string) {}

  get size(): number {
    return this.names.length;
  }

  /** Takes over the chunks already in the directory (older than anything this process will write). */
  async adopt(): Promise<number> {
    await fs.mkdir(this.dir, { recursive: true });
    const found = (await fs.readdir(this.dir)).filter((n) => n.endsWith(SUFFIX)).sort();
    const known = new Set(this.names);
    const fresh = found.filter((n) => !known.has(n));
    this.names.unshift(...fresh);
    this.names.sort();
    return fresh.length;
  }

  async write(chunk: LogChunk): Promise<void> {
    const name = `${String(chunk.sealedAtMs).padStart(15, '0')}-${path.posix.basename(chunk.key, '.jsonl')}${SUFFIX}`;
    const header: Header = { key: chunk.key, kind: chunk.kind, records: chunk.records, sealedAtMs: chunk.sealedAtMs };
    await fs.mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, name);
    const tmp = `${file}.${process.pid}.tmp`;
    await fs.writeFile(tmp, `${JSON.stringify(header)}\n${chunk.body}`);
    await fs.rename(tmp, file);
    this.names.push(name);
  }

  /** The oldest spilled chunk, or undefined when none is left. Skips files that another process took. */
  async oldest(): Promise<{ name: string; chunk: LogChunk } | undefined> {
    while (this.names.length > 0) {
      const name = this.names[0]!;
      try {
        const text = await fs.readFile(path.join(this.dir, name), 'utf8');
        const nl = text.indexOf('\n');
        const header = JSON.parse(text.slice(0, nl)) as Header;
        return { name, chunk: { ...header, body: text.slice(nl + 1) } };
      } catch (err) {
        if (!isMissing(err)) throw err;
        this.names.shift();
      }
    }
    return undefined;
  }

  async remove(name: string): Promise<void> {
    await fs.rm(path.join(this.dir, name), { force: true });
    const i = this.names.indexOf(name);
    if (i >= 0) this.names.splice(i, 1);
  }
}
