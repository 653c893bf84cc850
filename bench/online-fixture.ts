/**
 * What bench/online-path.ts and its processes share besides bench/serving-fixture.ts: the three ways of asking for
 * the same recommendation (history in the request; user id only with the history in Redis; user id only with the
 * history in the model's dataset), the Redis prefill that makes the second rank exactly the items the first sends,
 * the events the ingestion cells send, and the graph (built once and cached by bench/serving_models.py).
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { config } from '../lib/config';
import type { StoreEvent } from '../serving/online-store';
import type { FeedbackRequest, HistorySource, RecommendRequest } from '../serving/proto';
import { benchRequests, benchVersion, type BenchGraph } from './serving-fixture';

/** ML-1M's item count: the ~3.7k-item catalogue of bench/serving.ts. */
export const ONLINE_ITEMS = 3706;

/** Where a request's history comes from. */
export type Variant = 'request' | 'store' | 'dataset';
export const VARIANTS: readonly Variant[] = ['request', 'store', 'dataset'];
export const EXPECTED_SOURCE: Record<Variant, HistorySource> = {
  request: 'HISTORY_SOURCE_REQUEST',
  store: 'HISTORY_SOURCE_ONLINE_STORE',
  dataset: 'HISTORY_SOURCE_DATASET',
};

/** The event every bench event is: interest, so it goes into the history Recommend reads. */
const EVENT = 'FEEDBACK_EVENT_CLICK';

/**
 * The users whose history is in Redis only: bench request r's history, under another id. The request users `u<r>`
 * are the catalogue's dataset users (syntheticCatalog) and are never written to Redis.
 */
export const storeUserId = (r: number) => `online-u${r}`;

/** The online store's namespace for the bench model: its dataset's name, as RecommenderCore uses it. */
export const benchNamespace = (g: BenchGraph) => benchVersion(g).dataset.name;

/**
 * The bench requests of a variant, in the same order: request r ranks the same 20 items whichever variant asks.
 * `request` sends them; `store` and `dataset` send only the user id (the store variant's user is in Redis, the
 * dataset variant's is not, so the server reads Redis, misses, and takes the dataset's history).
 */
export function variantRequests(nItems: number, variant: Variant): RecommendRequest[] {
  const requests = benchRequests(nItems);
  if (variant === 'request') return requests;
  return requests.map((r, i) => ({
    user_id: variant === 'store' ? storeUserId(i) : r.user_id,
    history: [],
    k: r.k,
    exclude_item_ids: [],
  }));
}

/** The store users' histories: request r's items and times, as click events with ids of their own. */
export function prefillEvents(nItems: number): StoreEvent[] {
  return benchRequests(nItems).flatMap((r, i) =>
    r.history.map((h, j) => ({
      eventId: `bench-prefill:${i}:${j}`,
      userId: storeUserId(i),
      itemId: h.item_id,
      event: EVENT,
      timeMs: h.timestamp_ms,
      value: 0,
    })),
  );
}

/** Users per ingestion cell: enough that lists (capped at N per user) are written all over, not one hot key. */
const EVENT_USERS = 1000;

/** The user of event `n` of the cell whose event ids start with `prefix` (each cell writes its own users). */
export const eventUserId = (prefix: string, n: number) => `ev-${prefix}-u${n % EVENT_USERS}`;

/** Event `n` of a cell: a click with a unique client event id `<prefix>-<n>`, stamped by the server on receipt. */
export function benchEvent(prefix: string, n: number, nItems: number): FeedbackRequest {
  return {
    request_id: '',
    user_id: eventUserId(prefix, n),
    item_id: `i${1 + ((n * 7919) % nItems)}`,
    event: EVENT,
    timestamp_ms: 0,
    value: 0,
    event_id: `${prefix}-${n}`,
  };
}

/** The same event in the HTTP API's JSON (fields at their defaults left out, as a client would). */
export function benchEventJson(prefix: string, n: number, nItems: number): object {
  const e = benchEvent(prefix, n, nItems);
  return { user_id: e.user_id, item_id: e.item_id, event: e.event, event_id: e.event_id };
}

/** The graph of `nItems` items in `precision`, built with the platform's venv (torch) the first time, then cached. */
export function benchGraph(nItems: number, precision: BenchGraph['precision'] = 'fp32'): BenchGraph {
  const cache = process.env.RECSYS_CACHE || path.join(os.homedir(), '.cache', 'recsys');
  const out = execFileSync(
    config().python,
    [path.join(__dirname, 'serving_models.py'), path.join(cache, 'bench', 'serving-models'), String(nItems)],
    {
      cwd: path.resolve(__dirname, '..'),
      env: { ...process.env, OMP_NUM_THREADS: '1', PYTHONPATH: '.' },
      // The exporter's progress and warnings go nowhere unless it fails (then execFileSync's error carries them).
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const graph = out
    .toString()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as BenchGraph)
    .find((g) => g.n_items === nItems && g.precision === precision);
  if (!graph) throw new Error(`bench/serving_models.py printed no ${precision} graph of ${nItems} items`);
  return graph;
}
