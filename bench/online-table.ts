/** bench/online-path.ts' printed tables, ratios and aims (printed with their figures, never asserted). */
import type { Variant } from './online-fixture';
import type { BenchGraph } from './serving-fixture';
import type { LoadResult } from './serving-load';

/** One measurement, and what the server's counters said about it ('' when every answer was what the cell claims). */
export interface Cell {
  result: LoadResult;
  note: string;
}

export interface EventCell {
  label: string;
  /** Events per call. */
  batch: number;
  result: LoadResult;
  /** Events answered without error over the whole run (warm-up included). */
  sent: number;
  /** Of those, the ones whose dedupe marker is in Redis afterwards. */
  landed: number;
  /** Items in one of the cell's users' history, read through the store afterwards. */
  historyItems: number;
}

export interface OnlineReport {
  machine: string;
  redis: string;
  graph: BenchGraph;
  seconds: number;
  warmupS: number;
  concurrency: number[];
  /** gRPC Recommend per variant and concurrency, on the online server. */
  recommend: Map<Variant, Map<number, Cell>>;
  /** HTTP /v1/recommend, history in the request, same server. */
  http: Map<number, Cell>;
  /** RedisOnlineStore.recentHistory alone, one at a time, from an idle process. */
  storeRead: LoadResult;
  grpcEmpty: Map<number, LoadResult>;
  httpEmpty: Map<number, LoadResult>;
  eventConcurrency: number;
  events: EventCell[];
}

/** gRPC Recommend / empty grpc-js handler at concurrency 1, 16, 64 for 3,706 items fp32: issue 5's closing table. */
const GRPC_EMPTY_RATIO_BEFORE = [0.43, 0.62, 0.65];

const num = (v: number | undefined) => (v === undefined ? '-' : Math.round(v).toLocaleString('en-US'));
const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(2));
const div = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
const fixed = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(2));
const pct = (v: number | undefined) => (v === undefined ? '-' : `${(v * 100).toFixed(1)}%`);
/** Failed calls are printed next to the figures: a fast server that errors is not fast. */
const errs = (r: LoadResult | undefined) => (r?.errors ? ` (${r.errors} errors: ${r.firstError ?? '?'})` : '');

function line(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padStart(widths[i]!)).join('  ');
}

function historySources(r: OnlineReport): void {
  const c = r.concurrency;
  const get = (v: Variant, conc: number) => r.recommend.get(v)?.get(conc);
  console.log('1. Where the history comes from: gRPC Recommend, same server process and model');
  console.log('   request  the 20 items in the request');
  console.log('   store    user id only: the 20 items read from Redis (one LRANGE)');
  console.log("   dataset  user id only, not in Redis: the read misses, then the 20 items of the model's dataset");
  const w = [4, 11, 6, 6, 9, 6, 6, 11, 6, 6, 14, 14];
  console.log(
    line(
      [
        'conc',
        'request QPS',
        'p50 ms',
        'p99 ms',
        'store QPS',
        'p50 ms',
        'p99 ms',
        'dataset QPS',
        'p50 ms',
        'p99 ms',
        'store/req p50',
        'store/req QPS',
      ],
      w,
    ),
  );
  for (const conc of c) {
    const [q, s, d] = [get('request', conc), get('store', conc), get('dataset', conc)].map((x) => x?.result);
    console.log(
      line(
        [
          conc,
          num(q?.qps),
          ms(q?.p50),
          ms(q?.p99),
          num(s?.qps),
          ms(s?.p50),
          ms(s?.p99),
          num(d?.qps),
          ms(d?.p50),
          ms(d?.p99),
          fixed(div(s?.p50, q?.p50)),
          fixed(div(s?.qps, q?.qps)),
        ],
        w,
      ) +
        errs(q) +
        errs(s) +
        errs(d) +
        ['request', 'store', 'dataset'].map((v) => get(v as Variant, conc)?.note ?? '').join(''),
    );
  }
  const q16 = get('request', 16)?.result;
  const s16 = get('store', 16)?.result;
  if (q16 && s16) {
    // The read's share of a store request: what the store request takes beyond the same request without the read.
    const share = s16.p50 > 0 ? (s16.p50 - q16.p50) / s16.p50 : undefined;
    const qpsShare = q16.qps > 0 ? 1 - s16.qps / q16.qps : undefined;
    console.log(
      `   cost of the Redis read at concurrency 16: p50 store/request ${fixed(div(s16.p50, q16.p50))}, ` +
        `QPS store/request ${fixed(div(s16.qps, q16.qps))}`,
    );
    console.log(
      `   aim: the store read < 10% of a request's time at concurrency 16: ${pct(share)} of the p50 ` +
        `((store p50 - request p50) / store p50), ${pct(qpsShare)} of the QPS: ` +
        `${share !== undefined && share < 0.1 ? 'met' : 'not met'}`,
    );
  }
  const a = r.storeRead;
  console.log(
    `   the read alone (RedisOnlineStore.recentHistory, one at a time from an idle process): p50 ${ms(a.p50)} ms, ` +
      `p99 ${ms(a.p99)} ms, ${num(a.qps)} reads/s${a.errors ? `, ${a.errors} unavailable` : ''}`,
  );
}

function protocols(r: OnlineReport): void {
  console.log('2. HTTP/JSON vs gRPC, same server and model, history in the request');
  console.log("   (gRPC = section 1's request column; empty = the protocol's server with a handler that does nothing:");
  console.log('    grpc-js with the same service; express 5 with the same express.json parser, answering {})');
  const w = [4, 9, 6, 9, 6, 9, 14, 14, 10, 10];
  console.log(
    line(
      [
        'conc',
        'gRPC QPS',
        'p99 ms',
        'HTTP QPS',
        'p99 ms',
        'HTTP/gRPC',
        'gRPC empty QPS',
        'HTTP empty QPS',
        'gRPC/empty',
        'HTTP/empty',
      ],
      w,
    ),
  );
  for (const conc of r.concurrency) {
    const g = r.recommend.get('request')?.get(conc)?.result;
    const h = r.http.get(conc);
    const ge = r.grpcEmpty.get(conc);
    const he = r.httpEmpty.get(conc);
    console.log(
      line(
        [
          conc,
          num(g?.qps),
          ms(g?.p99),
          num(h?.result.qps),
          ms(h?.result.p99),
          fixed(div(h?.result.qps, g?.qps)),
          num(ge?.qps),
          num(he?.qps),
          fixed(div(g?.qps, ge?.qps)),
          fixed(div(h?.result.qps, he?.qps)),
        ],
        w,
      ) +
        errs(h?.result) +
        errs(ge) +
        errs(he) +
        (h?.note ?? ''),
    );
  }
  const at = (f: (conc: number) => number | undefined) => r.concurrency.map((c) => fixed(f(c))).join(' / ');
  const concs = r.concurrency.join(' / ');
  const httpOverGrpc = (c: number) => div(r.http.get(c)?.result.qps, r.recommend.get('request')?.get(c)?.result.qps);
  const met = r.concurrency.every((c) => (httpOverGrpc(c) ?? 0) >= 0.8);
  console.log(
    `   aim: HTTP >= 80% of gRPC's QPS: ${at(httpOverGrpc)} at concurrency ${concs}: ${met ? 'met' : 'not met'}`,
  );
  console.log(
    `   gRPC/empty ${at((c) => div(r.recommend.get('request')?.get(c)?.result.qps, r.grpcEmpty.get(c)?.qps))}; ` +
      `before this issue (issue 5's table, 3,706 fp32, no store): ${GRPC_EMPTY_RATIO_BEFORE.map((v) => v.toFixed(2)).join(' / ')}`,
  );
}

function ingestion(r: OnlineReport): void {
  console.log(`3. Events ingested into Redis, concurrency ${r.eventConcurrency}, click events with their own ids`);
  const w = [28, 11, 8, 9, 7, 7];
  console.log(
    line(['path', 'events/call', 'calls/s', 'events/s', 'p50 ms', 'p99 ms'], w) + '  in the store afterwards',
  );
  for (const e of r.events) {
    const landed =
      `${num(e.landed)} of ${num(e.sent)} events sent` +
      (e.landed < e.sent ? ` (!! ${num(e.sent - e.landed)} missing)` : '') +
      `; one user's history: ${e.historyItems} items`;
    console.log(
      line([e.label, e.batch, num(e.result.qps), num(e.result.qps * e.batch), ms(e.result.p50), ms(e.result.p99)], w) +
        `  ${landed}` +
        errs(e.result),
    );
  }
}

export function printOnlineReport(r: OnlineReport): void {
  const g = r.graph;
  console.log(`Online path benchmark on ${r.machine}`);
  console.log(
    `  ${g.n_items.toLocaleString('en-US')} items ${g.precision} (bench/serving_models.py), k=10, 20-item histories, ` +
      `${r.warmupS} s warm-up + ${r.seconds} s per cell, over 127.0.0.1`,
  );
  console.log(
    '  server: gRPC + HTTP/JSON over one RecommenderCore with the Redis online store, in its own process (no request ' +
      'log, no metrics)',
  );
  console.log(`  Redis: a redis-server of its own (${r.redis}, no persistence)`);
  console.log(
    '  load generators: bench/online-load.ts, one process per cell (grpc-js on one HTTP/2 connection; Node http ' +
      'with a keep-alive Agent, maxSockets = concurrency)',
  );
  console.log('');
  historySources(r);
  console.log('');
  protocols(r);
  console.log('');
  ingestion(r);
  console.log('');
  const all = [
    ...[...r.recommend.values()].flatMap((m) => [...m.values()].map((c) => c.result)),
    ...[...r.http.values()].map((c) => c.result),
    ...r.events.map((e) => e.result),
  ];
  const busiest = Math.max(...all.map((x) => x.clientCores ?? 0));
  const flagged = [...r.recommend.values(), r.http].some((m) => [...m.values()].some((c) => c.note !== ''));
  console.log(
    flagged
      ? '  !! some answers did not come from the history their cell claims (see the rows marked !!)'
      : "  every answer of every cell came from the history its cell claims (the server's counters)",
  );
  console.log(`  load generator against the online server: at most ${busiest.toFixed(2)} cores (of 2, shared)`);
}
