/**
 * The headers every HTTP API response carries: a request id, and the lineage of the version that answered (the same
 * four names and versions a RecommendResponse carries), so a client, a proxy's access log or a trace can tell which
 * model served a call, errors included, without parsing the body. The lineage pairs are built once per version.
 */
import type { ServerResponse } from 'node:http';
import type { ServableVersion } from '../model-version';

export const REQUEST_ID_HEADER = 'x-request-id';
export const MODEL_HEADER = 'x-recsys-model';
export const MODEL_VERSION_HEADER = 'x-recsys-model-version';
export const DATASET_HEADER = 'x-recsys-dataset';
export const DATASET_VERSION_HEADER = 'x-recsys-dataset-version';
export const API_VERSION_HEADERS = [MODEL_HEADER, MODEL_VERSION_HEADER, DATASET_HEADER, DATASET_VERSION_HEADER];

// A header value may hold visible ASCII, spaces and tabs (and latin-1, which clients read inconsistently): anything
// else (a registry name is free text) is percent-encoded rather than making Node throw mid-response.
const SAFE = /^[\t\x20-\x7e]*$/;
const headerValue = (v: string) => (SAFE.test(v) ? v : encodeURIComponent(v));

const cache = new WeakMap<ServableVersion, [string, string][]>();

function lineageOf(v: ServableVersion): [string, string][] {
  let pairs = cache.get(v);
  if (!pairs) {
    pairs = [
      [MODEL_HEADER, headerValue(v.name)],
      [MODEL_VERSION_HEADER, headerValue(v.version)],
      [DATASET_HEADER, headerValue(v.dataset.name)],
      [DATASET_VERSION_HEADER, headerValue(v.dataset.version)],
    ];
    cache.set(v, pairs);
  }
  return pairs;
}

/** Sets the request id and, when a version answered, its lineage. */
export function setResponseHeaders(res: ServerResponse, requestId: string, v: ServableVersion | undefined): void {
  res.setHeader(REQUEST_ID_HEADER, requestId);
  if (v) for (const [name, value] of lineageOf(v)) res.setHeader(name, value);
}

/** The same from a RecommendResponse's own lineage fields (what the version that ranked wrote into it). */
export function setRecommendHeaders(
  res: ServerResponse,
  r: { request_id: string; model_name: string; model_version: string; dataset_name: string; dataset_version: string },
): void {
  res.setHeader(REQUEST_ID_HEADER, r.request_id);
  res.setHeader(MODEL_HEADER, headerValue(r.model_name));
  res.setHeader(MODEL_VERSION_HEADER, headerValue(r.model_version));
  res.setHeader(DATASET_HEADER, headerValue(r.dataset_name));
  res.setHeader(DATASET_VERSION_HEADER, headerValue(r.dataset_version));
}
