/**
 * The S3-compatible object store (versitygw locally), addressed by `s3://bucket/key` URIs. Large data moves between
 * steps as URIs; this module is the only place that talks S3.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { config, type RecsysConfig } from './config';

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

export class ObjectStore {
  readonly client: S3Client;

  constructor(cfg: RecsysConfig = config()) {
    this.client = new S3Client({
      endpoint: cfg.s3Endpoint,
      region: cfg.s3Region,
      forcePathStyle: true,
      credentials: { accessKeyId: cfg.s3AccessKeyId, secretAccessKey: cfg.s3SecretAccessKey },
      // versitygw does not need the newer default checksums; skipping them saves a hash pass per upload.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async exists(uri: string): Promise<boolean> {
    const { bucket, key } = parseS3Uri(uri);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async putBytes(uri: string, body: Uint8Array | string, contentType = 'application/octet-stream'): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
  }

  async putJson(uri: string, value: unknown): Promise<void> {
    await this.putBytes(uri, JSON.stringify(value, null, 2), 'application/json');
  }

  async putFile(uri: string, file: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    const { size } = await fs.stat(file);
    await this.client.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: createReadStream(file), ContentLength: size }),
    );
  }

  /** Returns undefined when the object does not exist. */
  async getBytes(uri: string): Promise<Buffer | undefined> {
    const { bucket, key } = parseS3Uri(uri);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await out.Body!.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async getJson(uri: string): Promise<unknown> {
    const bytes = await this.getBytes(uri);
    return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as unknown);
  }

  /** Downloads to `file` atomically (temp file + rename), so a crash never leaves a truncated file behind. */
  async downloadFile(uri: string, file: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await fs.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.partial`;
    await pipeline(out.Body as Readable, createWriteStream(tmp));
    await fs.rename(tmp, file);
  }

  /** All object URIs under a prefix. */
  async list(prefixUri: string): Promise<string[]> {
    const { bucket, key } = parseS3Uri(prefixUri);
    const uris: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: key, ContinuationToken: token }),
      );
      for (const obj of page.Contents ?? []) if (obj.Key) uris.push(s3Uri(bucket, obj.Key));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return uris;
  }

  async deletePrefix(prefixUri: string): Promise<number> {
    const { bucket } = parseS3Uri(prefixUri);
    const uris = await this.list(prefixUri);
    for (let i = 0; i < uris.length; i += 1000) {
      const keys = uris.slice(i, i + 1000).map((u) => ({ Key: parseS3Uri(u).key }));
      await this.client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
    return uris.length;
  }
}

let shared: ObjectStore | undefined;
export function objectStore(): ObjectStore {
  shared ??= new ObjectStore();
  return shared;
}
