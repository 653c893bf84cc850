/**
 * The lifecycle every Python-backed activity (train, evaluate, export, quantize) shares, written once:
 *
 * - a finished step is never redone: its summary, stored last, is returned (`reused: true`) when it is present and
 *   still fits the summary's schema;
 * - heartbeats keep flowing while Python is quiet (loading data, building a model), so a heartbeat timeout means a
 *   dead worker and cancellation reaches the activity;
 * - a scratch directory per attempt, removed afterwards;
 * - Python's JSON result and events are parsed with the step's zod schemas, errors naming the module and the field;
 * - failures no retry can fix (a bad config, bad data, output that does not fit) become non-retryable
 *   ApplicationFailures; a cancelled activity (the process group killed by runPython) fails as CancelledFailure.
 */
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import type { z } from 'zod';
import { withTempDir } from '../lib/files';
import { withTicker } from '../lib/time';
import type { ActivityDeps } from './deps';
import { PythonStepError, runPython } from './python-process';

const HEARTBEAT_EVERY_MS = 5000;

/** Python printed something (an event, its result, a report) that does not fit the step's schema: a code mismatch. */
export class PythonOutputError extends Error {
  override readonly name: string = 'PythonOutputError';
}

/** `path: message` for each issue, so an error names every field that does not fit. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Parses what Python printed; `what` names it in the error (e.g. `models.train result`). */
export function parsePythonOutput<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new PythonOutputError(`${what}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

type EventSchemas = Record<string, z.ZodType>;

/** An event the step handles: its schema's output plus its name, so handlers can switch on `event`. */
export type PythonEventOf<E extends EventSchemas> = {
  [K in keyof E & string]: z.infer<E[K]> & { event: K };
}[keyof E & string];

export interface PythonCall<R, E extends EventSchemas> {
  /** e.g. `models.train`. */
  module: string;
  args: string[];
  /** Run under torchrun with this many processes (DDP). */
  nprocPerNode?: number;
  /** Schema of the final `{"event":"result",...}` line. */
  result: z.ZodType<R>;
  /** Schemas of the events the step handles, by event name; other events (start, error, ...) are not parsed. */
  events?: E;
  onEvent?: (event: PythonEventOf<E>) => Promise<void> | void;
  /** Called with the process (group) id once started. */
  onStart?: (pid: number) => void;
  /** Run this command instead, speaking the same protocol (runPython's `command`: a cluster node over ssh). */
  command?: { cmd: string; args: string[] };
}

export interface StepContext<H> {
  /** This attempt's scratch directory, removed when the step ends. */
  readonly dir: string;
  /** Heartbeat now and keep re-sending these details: a patch is merged into them, a function replaces them. */
  heartbeat(next: Partial<H> | ((current: H) => H)): void;
  /** Runs a Python entry point with the activity's cancellation signal and parses its events and result. */
  python<R, E extends EventSchemas = Record<never, z.ZodType>>(call: PythonCall<R, E>): Promise<R>;
}

/** A Python error type (`PythonStepError.errorType`) no retry can fix, optionally reported under another type. */
export type NonRetryable = string | { python: string; as: string };

export interface PythonStep<S extends { reused: boolean }, H> {
  /** Names the step in messages and its scratch directory, e.g. `training`. */
  name: string;
  /** Where the summary is stored once the step's outputs are: its presence means the step is complete. */
  summaryUri: string;
  /** Schema of the stored summary; a summary that no longer fits it is not reused. */
  summary: z.ZodType<S>;
  nonRetryable: readonly NonRetryable[];
  /** The first heartbeat details, re-sent every few seconds until the step ends. */
  heartbeat: H;
  /** Produces the step's outputs and returns the summary (`reused: false`); the helper stores it, last. */
  work: (ctx: StepContext<H>) => Promise<S>;
}

export async function runPythonStep<S extends { reused: boolean }, H>(
  deps: Pick<ActivityDeps, 'config' | 'store'>,
  step: PythonStep<S, H>,
): Promise<S> {
  const activity = Context.current();
  // A summary that is unreadable (not JSON) or no longer fits its schema is redone, never trusted.
  const stored = await deps.store.getJson(step.summaryUri).catch((err: unknown) => {
    if (err instanceof SyntaxError) return undefined;
    throw err; // the store is unreachable: retry later rather than redo the work
  });
  const existing = step.summary.safeParse(stored);
  if (existing.success) return { ...existing.data, reused: true };

  let details = step.heartbeat;
  try {
    return await withTicker(
      HEARTBEAT_EVERY_MS,
      () => activity.heartbeat(details),
      () =>
        withTempDir(step.name, async (dir) => {
          const ctx: StepContext<H> = {
            dir,
            heartbeat(next) {
              details = typeof next === 'function' ? next(details) : { ...details, ...next };
              activity.heartbeat(details);
            },
            python: (call) => python(call, deps.config.python, activity.cancellationSignal),
          };
          const summary = await step.work(ctx);
          // The summary last: its presence means every output above is stored.
          await deps.store.putJson(step.summaryUri, summary);
          return summary;
        }),
    );
  } catch (err) {
    if (activity.cancellationSignal.aborted) throw new CancelledFailure(`${step.name} cancelled`);
    if (err instanceof PythonStepError) {
      const match = step.nonRetryable.find((t) => (typeof t === 'string' ? t : t.python) === err.errorType);
      if (match !== undefined)
        throw ApplicationFailure.nonRetryable(err.message, typeof match === 'string' ? match : match.as);
    }
    // Output that does not fit its schema will not fit on the next attempt either.
    if (err instanceof PythonOutputError) throw ApplicationFailure.nonRetryable(err.message, err.name);
    throw err;
  }
}

async function python<R, E extends EventSchemas>(
  call: PythonCall<R, E>,
  interpreter: string,
  signal: AbortSignal,
): Promise<R> {
  const { events, onEvent } = call;
  const result = await runPython({
    module: call.module,
    args: call.args,
    nprocPerNode: call.nprocPerNode,
    command: call.command,
    holdStdin: call.command !== undefined,
    python: interpreter,
    signal,
    onStart: call.onStart,
    onEvent:
      events && onEvent
        ? async ({ event, ...fields }) => {
            if (!Object.hasOwn(events, event)) return;
            const parsed = parsePythonOutput(events[event]!, fields, `${call.module} ${event} event`);
            // The schema describes the event's fields; its name comes from the key it was parsed by.
            await onEvent({ ...(parsed as object), event } as PythonEventOf<E>);
          }
        : undefined,
  });
  return parsePythonOutput(call.result, result, `${call.module} result`);
}
