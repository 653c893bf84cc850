/** Ships log chunks to the object store under a prefix (`s3://<bucket>/serving-logs` by default). */
import { joinUri, type ObjectStore } from '../lib/object-store';
import type { ChunkUploader } from './request-log';

export const defaultLogPrefix = (bucket: string): string => `s3://${bucket}/serving-logs`;

export function objectStoreUploader(store: ObjectStore, prefixUri: string): ChunkUploader {
  return { put: (key, body) => store.putBytes(joinUri(prefixUri, key), body, 'application/x-ndjson') };
}
