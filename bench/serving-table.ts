/** The serving benchmark's printed table and ratios. */
import type { BenchGraph } from './serving-fixture';
import type { LoadResult } from './serving-load';

export interface Row {
  graph: BenchGraph;
  ours: Map<number, LoadResult>;
  python: Map<number, LoadResult>;
  inProcess: LoadResult;
}

export interface Report {
  machine: string;
  seconds: number;
  warmupS: number;
  concurrency: number[];
  empty: Map<number, LoadResult>;
  rows: Row[];
}

const qps = (r: LoadResult | undefined) => (r ? Math.round(r.qps).toLocaleString('en-US') : '-');
const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(2));
const ratio = (a: LoadResult | undefined, b: LoadResult | undefined) =>
  a && b && b.qps > 0 ? (a.qps / b.qps).toFixed(2) : '-';
const cores = (r: LoadResult | undefined) => r?.clientCores?.toFixed(2) ?? '-';
/** Failed calls are printed next to the figures: a fast server that errors is not fast. */
const errs = (r: LoadResult | undefined) => (r?.errors ? ` (${r.errors} errors: ${r.firstError ?? '?'})` : '');

function line(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padStart(widths[i]!)).join('  ');
}

export function printTable(r: Report): void {
  console.log(`Serving benchmark on ${r.machine}`);
  console.log(
    `  Recommend over 127.0.0.1, k=10, 20-item histories, ${r.warmupS} s warm-up + ${r.seconds} s per cell, one HTTP/2 connection`,
  );
  console.log('  load generator: bench/serving-load.ts (grpc-js, its own process, pre-encoded requests)');
  console.log('');
  const w = [9, 5, 4, 8, 7, 7, 8, 7, 7, 10, 10, 10];
  console.log(
    line(
      [
        'catalogue',
        'prec',
        'conc',
        'ours QPS',
        'p50 ms',
        'p99 ms',
        'py QPS',
        'p50 ms',
        'p99 ms',
        'ours/empty',
        'ours/py',
        'ours/inproc',
      ],
      w,
    ),
  );
  for (const row of r.rows)
    for (const c of r.concurrency) {
      const o = row.ours.get(c);
      const p = row.python.get(c);
      console.log(
        line(
          [
            row.graph.n_items,
            row.graph.precision,
            c,
            qps(o),
            ms(o?.p50),
            ms(o?.p99),
            qps(p),
            ms(p?.p50),
            ms(p?.p99),
            ratio(o, r.empty.get(c)),
            ratio(o, p),
            ratio(o, row.inProcess),
          ],
          w,
        ) +
          errs(o) +
          errs(p),
      );
    }
  console.log('');
  console.log('  references');
  for (const c of r.concurrency) {
    const e = r.empty.get(c);
    console.log(
      `    grpc-js empty handler, conc ${String(c).padStart(2)}: ${qps(e)} QPS, p50 ${ms(e?.p50)} ms, p99 ${ms(e?.p99)} ms, load generator ${cores(e)} cores${errs(e)}`,
    );
  }
  for (const row of r.rows) {
    const i = row.inProcess;
    console.log(
      `    in-process graph, ${String(row.graph.n_items).padStart(6)} ${row.graph.precision}, one call at a time: ${qps(i)} calls/s, p50 ${ms(i.p50)} ms, p99 ${ms(i.p99)} ms`,
    );
  }
  const busiest = Math.max(...r.rows.flatMap((row) => [...row.ours.values()].map((o) => o.clientCores ?? 0)));
  console.log(`    load generator against ours: at most ${busiest.toFixed(2)} cores (of 2, shared with the server)`);
}
