/**
 * Builds and checks a version's HNSW index in a process of its own, speaking the Python steps' JSON-lines protocol
 * (activities/python-process.ts): the build and the check are long synchronous native and CPU work (minutes at a
 * million items) that would block the worker's event loop, and with it the activity's heartbeats and cancellation.
 * Run apart, the activity keeps heartbeating, a cancellation kills the process group, and the index's memory is
 * returned when it exits.
 *
 *   node --import tsx activities/ann-build.ts --items I.f32 --queries Q.f32 --dims D --n-items N --out index.usearch
 *        [--k 10] [--target 0.99]
 *
 * Reads the item vectors (raw little-endian float32 [N, D], row j = item j + 1) and the check's query vectors
 * ([b, D]) that models/ann_export.py wrote, then builds and checks the index (serving/retrieval/build-tuned.ts): the
 * inner-product graph first and, when no search depth brings its recall@k against exact search to the target, the
 * angular graph; for each, the smallest expansionSearch that reaches the target. Only an index that passes is saved
 * to --out. stdout: progress events, then
 *   {"event":"result","passed":true,"graph":"ip"|"angular","expansionSearch":e,"recall":r,"params":{...},
 *    "attempts":[{"graph":...,"buildSeconds":s,"tried":[...]}],"k":k,"target":t,"queries":b,"nItems":N,"seconds":s}
 * or "passed":false with "reason" (no file written); an error: {"event":"error","type":...,"message":...}, exit 1.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildTunedHnsw, type GraphAttempt, type HnswGraph, type HnswParams } from '../serving/retrieval';

export interface AnnBuildArgs {
  items: string;
  queries: string;
  dims: number;
  nItems: number;
  out: string;
  k: number;
  target: number;
}

interface AnnBuildCommon {
  /** Every graph kind built, in order, with the recall@k of each depth tried. */
  attempts: GraphAttempt[];
  k: number;
  target: number;
  queries: number;
  nItems: number;
  /** Builds and checks, all graphs. */
  seconds: number;
}

export type AnnBuildResult =
  | ({ passed: true; graph: HnswGraph; expansionSearch: number; recall: number; params: HnswParams } & AnnBuildCommon)
  | ({ passed: false; reason: string } & AnnBuildCommon);

/** A raw float32 matrix file with `dims` columns (and `rows` rows when given); the error names the file and sizes. */
export async function readMatrix(file: string, dims: number, rows?: number): Promise<Float32Array> {
  const bytes = await readFile(file);
  const rowBytes = 4 * dims;
  if (bytes.length === 0 || bytes.length % rowBytes !== 0 || (rows !== undefined && bytes.length !== rows * rowBytes))
    throw new Error(
      `${file}: ${bytes.length} bytes, expected ${rows === undefined ? 'a positive multiple of' : `${rows} rows x`} ` +
        `${dims} float32 (${rowBytes} bytes a row)`,
    );
  // A copy into its own buffer: a Float32Array view needs a 4-byte aligned offset, which Node's pool does not promise.
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

const seconds = (since: number) => Math.round((performance.now() - since) / 10) / 100;

const GRAPH_NAMES: Record<HnswGraph, string> = { ip: 'inner-product', angular: 'angular' };

/** Why no graph may serve: each graph's recall at the deepest search tried. */
function rejection(attempts: GraphAttempt[], k: number, target: number): string {
  const deepest = attempts.map((a) => ({ graph: a.graph, ...a.tried[a.tried.length - 1]! }));
  const depth = Math.max(...deepest.map((d) => d.expansionSearch));
  const recalls = deepest.map((d) => `${d.recall.toFixed(4)} with the ${GRAPH_NAMES[d.graph]} graph`).join(', ');
  return (
    `HNSW recall@${k} against exact search stays below the target ${target} at the deepest search tried ` +
    `(expansionSearch ${depth}): ${recalls}; the version serves exact top-K`
  );
}

/** Builds, checks and (when one passes) saves the index; `emit` gets the progress events. */
export async function buildAnnIndex(
  args: AnnBuildArgs,
  emit: (event: string, fields: object) => void,
): Promise<AnnBuildResult> {
  const items = await readMatrix(args.items, args.dims, args.nItems);
  const queries = await readMatrix(args.queries, args.dims);
  const nQueries = queries.length / args.dims;
  // A catalogue smaller than k is checked on all of it.
  const k = Math.min(args.k, args.nItems);
  const t0 = performance.now();
  const { chosen, attempts } = buildTunedHnsw(items, args.dims, queries, {
    k,
    target: args.target,
    onBuilding: (graph) => emit('progress', { phase: 'build', graph, items: args.nItems, dims: args.dims }),
    onBuilt: ({ graph, buildSeconds }) =>
      emit('progress', { phase: 'tune', graph, buildSeconds, queries: nQueries, k, target: args.target }),
    onTry: (t) => emit('progress', { phase: 'tune', ...t }),
  });
  const common = { attempts, k, target: args.target, queries: nQueries, nItems: args.nItems, seconds: seconds(t0) };
  if (!chosen) return { passed: false, reason: rejection(attempts, k, args.target), ...common };
  await chosen.index.save(args.out);
  return {
    passed: true,
    graph: chosen.graph,
    expansionSearch: chosen.expansionSearch,
    recall: chosen.recall,
    params: chosen.index.params,
    ...common,
  };
}

function parse(argv: string[]): AnnBuildArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      items: { type: 'string' },
      queries: { type: 'string' },
      dims: { type: 'string' },
      'n-items': { type: 'string' },
      out: { type: 'string' },
      k: { type: 'string', default: '10' },
      target: { type: 'string', default: '0.99' },
    },
    strict: true,
  });
  const need = (name: keyof typeof values): string => {
    const v = values[name];
    if (v === undefined || v === '') throw new Error(`--${name} is required`);
    return v;
  };
  const int = (name: keyof typeof values): number => {
    const v = Number(need(name));
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${values[name]}`);
    return v;
  };
  const target = Number(need('target'));
  if (!(target > 0 && target <= 1)) throw new Error(`--target must be in (0, 1], got ${values.target}`);
  return {
    items: need('items'),
    queries: need('queries'),
    dims: int('dims'),
    nItems: int('n-items'),
    out: need('out'),
    k: int('k'),
    target,
  };
}

/** Ends this process when the worker that started it is gone (the check runs between the synchronous phases). */
function watchSupervisor(): void {
  const pid = Number(process.env.RECSYS_SUPERVISOR_PID);
  if (!Number.isInteger(pid) || pid <= 0) return;
  setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch {
      process.exit(3);
    }
  }, 2000).unref();
}

async function main(): Promise<void> {
  const emit = (event: string, fields: object) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
  watchSupervisor();
  try {
    const result = await buildAnnIndex(parse(process.argv.slice(2)), emit);
    emit('result', result);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    emit('error', { type: e.name === 'Error' ? 'AnnBuildError' : e.name, message: e.message });
    process.exitCode = 1;
  }
}

if (require.main === module) void main();
