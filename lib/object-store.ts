/**
 * The S3-compatible object store (versitygw locally), addressed by `s3://bucket/key` URIs. Large data moves between
 * steps as URIs; this module is the only place that talks S3. Every request has deadlines (connect, response, idle
 * mid-transfer; lib/config.ts), so a hung store fails a step with an error naming the object instead of blocking it.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { config, type RecsysConfig } from './config';
import { describeS3 } from './s3-settings';

/** One listed object. */
export interface ObjectInfo {
  uri: string;
  /** The object's key in its bucket. */
  key: string;
  /** The ETag as the store gives it, without the surrounding quotes ('' when the store gives none). */
  etag: string;
  size: number;
}

export interface S3Location {
  bucket: string;
  key: string;
}

export function parseS3Uri(uri: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!match?.[1]) throw new Error(`not an s3:// URI: ${JSON.stringify(uri)}`);
  return { bucket: match[1], key: match[2] ?? '' };
}

export function s3Uri(bucket: string, ...parts: string[]): string {
  return `s3://${bucket}/${parts.map((p) => p.replace(/^\/+|\/+$/g, '')).join('/')}`;
}

/** Joins an s3:// prefix and a relative key. */
export function joinUri(prefix: string, ...parts: string[]): string {
  const { bucket, key } = parseS3Uri(prefix);
  return s3Uri(bucket, ...[key, ...parts].filter((p) => p !== ''));
}

function isNotFound(err: unknown): boolean {
  return err instanceof NoSuchKey || err instanceof NotFound || (err as { name?: string }).name === 'NotFound';
}

/** A request to the object store that missed one of its deadlines. */
export class ObjectStoreTimeoutError extends Error {
  override readonly name = 'ObjectStoreTimeoutError';
}

/**
 * The S3 client's configuration. A custom endpoint (the local versitygw, any S3-compatible store) is addressed
 * path-style with the configured keys; without one (RECSYS_S3_ENDPOINT=aws) the SDK resolves endpoint, region,
 * virtual-hosted addressing and, when no keys are configured, credentials (its default chain: `credentials` omitted).
 */
export function s3ClientConfig(cfg: RecsysConfig): S3ClientConfig {
  return {
    ...(cfg.s3Endpoint !== undefined && { endpoint: cfg.s3Endpoint }),
    ...(cfg.s3Region !== undefined && { region: cfg.s3Region }),
    forcePathStyle: cfg.s3ForcePathStyle,
    ...(cfg.s3Credentials !== undefined && { credentials: cfg.s3Credentials }),
    // versitygw does not need the newer default checksums; skipping them saves a hash pass per upload.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Constructor options of the SDK's default NodeHttpHandler. Without them a store that accepts and never
    // answers blocks the caller forever. throwOnRequestTimeout: otherwise the SDK only logs a warning.
    requestHandler: {
      connectionTimeout: cfg.s3ConnectTimeoutMs,
      requestTimeout: cfg.s3RequestTimeoutMs,
      throwOnRequestTimeout: true,
      socketTimeout: cfg.s3IdleTimeoutMs,
    },
  };
}

export class ObjectStore {
  readonly client: S3Client;
  private readonly endpoint: string;

  constructor(cfg: RecsysConfig = config()) {
    this.endpoint = describeS3({ endpoint: cfg.s3Endpoint, region: cfg.s3Region });
    this.client = new S3Client(s3ClientConfig(cfg));
  }

  /** Runs one store operation; a missed deadline becomes an error naming the operation, the object and the store. */
  private async deadline<T>(op: string, uri: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if ((err as { name?: string }).name !== 'TimeoutError') throw err;
      throw new ObjectStoreTimeoutError(
        `object store ${this.endpoint}: ${op} ${uri} timed out: ${(err as Error).message} ` +
          '(deadlines: RECSYS_S3_CONNECT_TIMEOUT_MS, RECSYS_S3_REQUEST_TIMEOUT_MS, RECSYS_S3_IDLE_TIMEOUT_MS)',
        { cause: err },
      );
    }
  }

  async exists(uri: string): Promise<boolean> {
    const { bucket, key } = parseS3Uri(uri);
    return this.deadline('HeadObject', uri, async () => {
      try {
        await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    });
  }

  async putBytes(uri: string, body: Uint8Array | string, contentType = 'application/octet-stream'): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    await this.deadline('PutObject', uri, () =>
      this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType })),
    );
  }

  async putJson(uri: string, value: unknown): Promise<void> {
    await this.putBytes(uri, JSON.stringify(value, null, 2), 'application/json');
  }

  async putFile(uri: string, file: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    const { size } = await fs.stat(file);
    await this.deadline('PutObject', uri, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: createReadStream(file), ContentLength: size }),
      ),
    );
  }

  /** Returns undefined when the object does not exist. */
  async getBytes(uri: string): Promise<Buffer | undefined> {
    const { bucket, key } = parseS3Uri(uri);
    return this.deadline('GetObject', uri, async () => {
      try {
        const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return Buffer.from(await out.Body!.transformToByteArray());
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  async getJson(uri: string): Promise<unknown> {
    const bytes = await this.getBytes(uri);
    return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as unknown);
  }

  /**
   * Downloads to `file` atomically (temp file + rename), so a crash never leaves a truncated file behind. The temp
   * name is unique per call, not per process: two downloads of one object in one worker must not share it.
   * `onBytes` hears the bytes written so far (for heartbeats).
   */
  async downloadFile(uri: string, file: string, onBytes?: (bytes: number) => void): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    await fs.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}.partial`;
    try {
      await this.deadline('GetObject', uri, async () => {
        const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        let bytes = 0;
        const count = new Transform({
          transform(chunk: Buffer, _enc, done) {
            bytes += chunk.length;
            onBytes?.(bytes);
            done(null, chunk);
          },
        });
        await pipeline(out.Body as Readable, count, createWriteStream(tmp));
      });
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  /** Deletes one object (no error when it does not exist). */
  async delete(uri: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    await this.deadline('DeleteObject', uri, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })),
    );
  }

  /** All object URIs under a prefix. */
  async list(prefixUri: string): Promise<string[]> {
    return (await this.listObjects(prefixUri)).map((o) => o.uri);
  }

  /**
   * The objects under a prefix with what identifies their content (ETag, without its quotes) and their size: what a
   * cache keyed by key and ETag needs to tell a changed object from an unchanged one without downloading it.
   */
  async listObjects(prefixUri: string): Promise<ObjectInfo[]> {
    const { bucket, key } = parseS3Uri(prefixUri);
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.deadline('ListObjectsV2', prefixUri, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, ContinuationToken: token })),
      );
      for (const obj of page.Contents ?? [])
        if (obj.Key)
          out.push({
            uri: s3Uri(bucket, obj.Key),
            key: obj.Key,
            etag: (obj.ETag ?? '').replace(/^"|"$/g, ''),
            size: obj.Size ?? 0,
          });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async deletePrefix(prefixUri: string): Promise<number> {
    const { bucket } = parseS3Uri(prefixUri);
    const uris = await this.list(prefixUri);
    for (let i = 0; i < uris.length; i += 1000) {
      const keys = uris.slice(i, i + 1000).map((u) => ({ Key: parseS3Uri(u).key }));
      await this.deadline('DeleteObjects', prefixUri, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } })),
      );
    }
    return uris.length;
  }
}

let shared: ObjectStore | undefined;
export function objectStore(): ObjectStore {
  shared ??= new ObjectStore();
  return shared;
}
