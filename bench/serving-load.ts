/**
 * The load generator, one process per measurement (started by bench/serving.ts):
 *   node --import tsx bench/serving-load.ts '{"address","concurrency","warmupS","seconds","nItems"}'
 * `concurrency` calls in flight on one HTTP/2 connection (as ghz does by default); each completion sends the next
 * request, until the time is up. Requests are encoded once up front and responses are not decoded, so the client
 * spends as little as possible of the machine's two cores. Prints one JSON line: calls, errors, QPS, p50, p99 (ms).
 * The closed loop itself (closedLoop) is shared with bench/online-load.ts' other protocols and calls.
 */
import * as grpc from '@grpc/grpc-js';
import { packageDefinition } from '../serving/proto';
import { benchRequests } from './serving-fixture';

export interface LoadSpec {
  address: string;
  concurrency: number;
  warmupS: number;
  seconds: number;
  nItems: number;
}

export interface LoadResult {
  calls: number;
  errors: number;
  firstError?: string;
  qps: number;
  p50: number;
  p99: number;
  /** CPU the load generator itself used over the whole run, in cores (1 = one core busy): is the client the limit? */
  clientCores?: number;
  /** Calls answered without error over the whole run, warm-up and the calls in flight at the end included. */
  okCalls?: number;
}

const METHOD = '/recsys.v1.Recommender/Recommend';
const identity = (b: Buffer) => b;

function percentile(sorted: Float64Array, q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : NaN;
}

/** Timing of a closed loop: `concurrency` calls in flight, warm-up not measured, then `seconds` measured. */
export type LoopTiming = Pick<LoadSpec, 'concurrency' | 'warmupS' | 'seconds'>;

/** One call: `i` numbers the calls of a run from 0 (unique); `done` is called once, with an error message or not. */
export type Call = (i: number, done: (error?: string) => void) => void;

/**
 * Runs `concurrency` loops of `call` (each completion sends the next) until the time is up, then waits for the calls
 * in flight. Latencies are of the calls started and answered within the measured window.
 */
export async function closedLoop(spec: LoopTiming, call: Call): Promise<LoadResult> {
  // Room for 100k calls/s over the measured window; more would be beyond anything a 2-core machine serves.
  const latencies = new Float64Array(Math.ceil(spec.seconds * 100_000));
  let n = 0;
  let errors = 0;
  let okCalls = 0;
  let firstError: string | undefined;
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const measureFrom = t0 + spec.warmupS * 1000;
  const end = measureFrom + spec.seconds * 1000;

  const loop = () =>
    new Promise<void>((done) => {
      const send = () => {
        const start = performance.now();
        if (start >= end) return done();
        call(next++, (err) => {
          const now = performance.now();
          if (err === undefined) okCalls++;
          if (start >= measureFrom && now <= end) {
            if (err !== undefined) {
              errors++;
              firstError ??= err;
            } else if (n < latencies.length) latencies[n++] = now - start;
          }
          send();
        });
      };
      send();
    });
  await Promise.all(Array.from({ length: spec.concurrency }, loop));
  const used = process.cpuUsage(cpu0);
  const clientCores = (used.user + used.system) / 1000 / (performance.now() - t0);

  const sorted = latencies.subarray(0, n).sort();
  return {
    calls: n,
    errors,
    firstError,
    qps: n / spec.seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    clientCores,
    okCalls,
  };
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const def = packageDefinition()['recsys.v1.Recommender'] as grpc.ServiceDefinition;
  const encode = def.Recommend!.requestSerialize;
  const requests = benchRequests(spec.nItems).map((r) => encode(r));
  const client = new grpc.Client(spec.address, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
  );
  const result = await closedLoop(spec, (i, done) =>
    client.makeUnaryRequest(
      METHOD,
      identity,
      identity,
      requests[i % requests.length]!,
      { deadline: Date.now() + 10_000 },
      (err) => done(err ? err.message : undefined),
    ),
  );
  client.close();
  return result;
}

if (require.main === module) {
  run(JSON.parse(process.argv[2] ?? '') as LoadSpec).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
