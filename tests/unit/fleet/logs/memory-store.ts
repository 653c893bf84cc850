/**
 * An in-memory stand-in for the object store's listing, download and upload, for the unit tests of the log readers
 * (the integration test runs them against versitygw). ETags are the MD5 of the body, as S3 gives for simple uploads;
 * downloads are counted per URI so a test can see what a cache reused.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseS3Uri, type ObjectInfo, type ObjectStore } from '../../../../lib/object-store';

export class MemoryStore {
  readonly objects = new Map<string, Buffer>();
  readonly downloads = new Map<string, number>();
  /** Called before each download writes (to change an object mid-read, or to delay). */
  beforeDownload?: (uri: string) => Promise<void> | void;

  put(uri: string, body: string | Buffer): void {
    this.objects.set(uri, Buffer.from(body));
  }

  asStore(): ObjectStore {
    return this as unknown as ObjectStore;
  }

  listObjects(prefixUri: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for (const [uri, body] of [...this.objects].sort(([a], [b]) => (a < b ? -1 : 1)))
      if (uri.startsWith(prefixUri))
        out.push({
          uri,
          key: parseS3Uri(uri).key,
          etag: createHash('md5').update(body).digest('hex'),
          size: body.length,
        });
    return Promise.resolve(out);
  }

  async downloadFile(uri: string, file: string): Promise<void> {
    await this.beforeDownload?.(uri);
    const body = this.objects.get(uri);
    if (!body) throw new Error(`no object ${uri}`);
    this.downloads.set(uri, (this.downloads.get(uri) ?? 0) + 1);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, body);
  }

  readonly reads = new Map<string, number>();

  getJson(uri: string): Promise<unknown> {
    this.reads.set(uri, (this.reads.get(uri) ?? 0) + 1);
    const body = this.objects.get(uri);
    return Promise.resolve(body === undefined ? undefined : (JSON.parse(body.toString('utf8')) as unknown));
  }

  exists(uri: string): Promise<boolean> {
    return Promise.resolve(this.objects.has(uri));
  }

  async putFile(uri: string, file: string): Promise<void> {
    this.objects.set(uri, await fs.readFile(file));
  }
}
