/**
 * runPythonStep and runPython against a fake interpreter: a shell script that answers `-m <module> <args...>` with the
 * JSON lines the real entry points print, so the protocol, schemas, failures, cancellation and heartbeats are tested
 * without Python. The object store is an in-memory map.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { z } from 'zod';
import { REPO_ROOT, PythonStepError, runPython, type PythonEvent } from '../../../activities/python-process';
import { runPythonStep, type PythonStep, type StepContext } from '../../../activities/python-step';
import { loadConfig } from '../../../lib/config';
import type { ObjectStore } from '../../../lib/object-store';

let tmp: string;
let python: string;
let invocationLog: string;

/** The fake interpreter: `$1` is `-m`, `$2` the module, the rest its arguments. Every run is logged. */
const fakePython = (log: string) => `#!/bin/sh
[ "$1" = "-m" ] || { echo "expected -m, got $1" >&2; exit 64; }
module=$2
shift 2
echo "$module" >> '${log}'
case "$module" in
  fake.result)
    printf '{"event":"result","loss":0.25,"cwd":"%s","args":"%s"}\\n' "$(pwd -P)" "$*" ;;
  fake.events)
    echo '{"event":"start","epochs":2}'
    echo 'not json: a library printing to stdout'
    echo '{"event":"progress","step":1,"loss":0.5,"junk":"dropped by the schema"}'
    echo '{"event":"checkpoint","uri":"s3://bucket/ckpt-1"}'
    echo '{"event":"progress","step":2,"loss":0.25}'
    echo '{"event":"result","loss":0.25}' ;;
  fake.bad-event)
    sleep 30 &
    echo "$$ $!" > "$1"
    echo '{"event":"progress","step":"two","loss":0.5}'
    wait ;;
  fake.stray-json)
    echo 'null'
    echo '42'
    echo '{"no":"event"}'
    echo '{"event":"result","loss":0.25}' ;;
  fake.bad-result)
    echo '{"event":"result","loss":"low"}' ;;
  fake.error)
    echo 'Traceback (most recent call last): ...' >&2
    printf '{"event":"error","type":"%s","message":"%s"}\\n' "$1" "$2"
    exit 1 ;;
  fake.crash)
    echo 'Segmentation fault in the loader' >&2
    exit 3 ;;
  fake.sleep)
    sleep 30 &
    echo "$$ $!" > "$1"
    echo '{"event":"started"}'
    wait ;;
  *)
    echo "unknown module $module" >&2
    exit 2 ;;
esac
`;

/** torchrun next to the interpreter: reports how it was called. */
const fakeTorchrun = `#!/bin/sh
printf '{"event":"result","argv":"%s"}\\n' "$*"
`;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'python-step-test-'));
  python = path.join(tmp, 'python');
  invocationLog = path.join(tmp, 'invocations.log');
  fs.writeFileSync(python, fakePython(invocationLog), { mode: 0o755 });
  fs.writeFileSync(path.join(tmp, 'torchrun'), fakeTorchrun, { mode: 0o755 });
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  fs.rmSync(invocationLog, { force: true });
});

/** The modules the fake interpreter was run with since the test began. */
function invocations(): string[] {
  return fs.existsSync(invocationLog) ? fs.readFileSync(invocationLog, 'utf8').trim().split('\n') : [];
}

/** An in-memory object store holding JSON text, logging what is read and written. */
class MemoryStore {
  readonly objects = new Map<string, string>();
  readonly log: string[] = [];

  getJson(uri: string): Promise<unknown> {
    this.log.push(`get ${uri}`);
    const text = this.objects.get(uri);
    return Promise.resolve(text === undefined ? undefined : (JSON.parse(text) as unknown));
  }

  putJson(uri: string, value: unknown): Promise<void> {
    this.log.push(`put ${uri}`);
    this.objects.set(uri, JSON.stringify(value));
    return Promise.resolve();
  }
}

const SUMMARY_URI = 's3://bucket/steps/unit/summary.json';
const Summary = z.object({ reused: z.boolean(), loss: z.number() });
type Summary = z.infer<typeof Summary>;
const Result = z.object({ loss: z.number() });
interface Beat {
  phase: string;
  epoch?: number;
  note?: string;
}

function setup() {
  const store = new MemoryStore();
  const deps = { config: { ...loadConfig(), python }, store: store as unknown as ObjectStore };
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const beats: unknown[] = [];
  env.on('heartbeat', (details: unknown) => beats.push(details));
  return { store, deps, env, beats };
}

/** A step whose work runs `fake.result` and returns its loss; fields can be replaced. */
function step(overrides: Partial<PythonStep<Summary, Beat>> = {}): PythonStep<Summary, Beat> {
  return {
    name: 'unit',
    summaryUri: SUMMARY_URI,
    summary: Summary,
    nonRetryable: [],
    heartbeat: { phase: 'start' },
    work: async (ctx) => {
      const { loss } = await ctx.python({ module: 'fake.result', args: [], result: Result });
      return { reused: false, loss };
    },
    ...overrides,
  };
}

/** The error `promise` rejects with; fails the test if it resolves. */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

function asApplicationFailure(err: unknown): ApplicationFailure {
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

/** Processes of group `pgid` still running (zombies waiting to be reaped are not). */
function liveInGroup(pgid: number): number[] {
  const live: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') live.push(Number(entry));
  }
  return live;
}

/** Waits (briefly) until nothing of group `pgid` runs; returns what still does. */
async function groupGone(pgid: number): Promise<number[]> {
  const deadline = Date.now() + 1000;
  let live = liveInGroup(pgid);
  while (live.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    live = liveInGroup(pgid);
  }
  return live;
}

/** The pids the fake interpreter wrote: its own (the group leader) and its background sleep's. */
function readPids(file: string): [number, number] {
  const [leader, sleeper] = fs.readFileSync(file, 'utf8').trim().split(' ').map(Number);
  return [leader!, sleeper!];
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('runPythonStep: reusing a finished step', () => {
  test('a stored summary that fits the schema is returned with reused: true and Python is not run', async () => {
    const { store, deps, env } = setup();
    store.objects.set(SUMMARY_URI, JSON.stringify({ reused: false, loss: 0.125 }));
    const work = jest.fn<Promise<Summary>, [StepContext<Beat>]>();

    const summary = await env.run(runPythonStep<Summary, Beat>, deps, step({ work }));

    expect(summary).toStrictEqual({ reused: true, loss: 0.125 });
    expect(work).not.toHaveBeenCalled();
    expect(invocations()).toEqual([]);
    expect(store.log).toEqual([`get ${SUMMARY_URI}`]); // nothing written
  });

  test('a stored summary that no longer fits is not reused: the step runs and stores a new one', async () => {
    const { store, deps, env } = setup();
    store.objects.set(SUMMARY_URI, JSON.stringify({ reused: false, loss: 'NaN' }));

    const summary = await env.run(runPythonStep<Summary, Beat>, deps, step());

    expect(summary).toStrictEqual({ reused: false, loss: 0.25 });
    expect(invocations()).toEqual(['fake.result']);
    expect(JSON.parse(store.objects.get(SUMMARY_URI)!)).toStrictEqual({ reused: false, loss: 0.25 });
  });
});

describe('runPythonStep: storing the summary', () => {
  test('the summary is stored only after work returns, and the scratch directory is removed', async () => {
    const { store, deps, env } = setup();
    let dir = '';
    const summary = await env.run(
      runPythonStep<Summary, Beat>,
      deps,
      step({
        work: async (ctx) => {
          dir = ctx.dir;
          expect(fs.statSync(ctx.dir).isDirectory()).toBe(true);
          const { loss } = await ctx.python({ module: 'fake.result', args: [], result: Result });
          expect(store.objects.has(SUMMARY_URI)).toBe(false);
          store.log.push('work returns');
          return { reused: false, loss };
        },
      }),
    );

    expect(summary).toStrictEqual({ reused: false, loss: 0.25 });
    expect(store.log).toEqual([`get ${SUMMARY_URI}`, 'work returns', `put ${SUMMARY_URI}`]);
    expect(JSON.parse(store.objects.get(SUMMARY_URI)!)).toStrictEqual(summary);
    expect(path.basename(dir)).toMatch(/^recsys-unit-/);
    expect(fs.existsSync(dir)).toBe(false);
  });

  test('nothing is stored when work throws; the error is rethrown as is (retryable)', async () => {
    const { store, deps, env } = setup();
    const boom = new Error('upload failed');
    let dir = '';

    const err = await failure(
      env.run(
        runPythonStep<Summary, Beat>,
        deps,
        step({
          work: async (ctx) => {
            dir = ctx.dir;
            await ctx.python({ module: 'fake.result', args: [], result: Result });
            throw boom;
          },
        }),
      ),
    );

    expect(err).toBe(boom);
    expect(invocations()).toEqual(['fake.result']);
    expect(store.objects.size).toBe(0);
    expect(store.log).toEqual([`get ${SUMMARY_URI}`]);
    expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('runPythonStep: events and results', () => {
  test("events are parsed with their schema and reach onEvent with their name; others don't", async () => {
    const { deps, env } = setup();
    const seen: unknown[] = [];
    const summary = await env.run(
      runPythonStep<Summary, Beat>,
      deps,
      step({
        work: async (ctx) => {
          const { loss } = await ctx.python({
            module: 'fake.events',
            args: [],
            result: Result,
            events: {
              progress: z.object({ step: z.number(), loss: z.number() }),
              checkpoint: z.object({ uri: z.string().transform((u) => new URL(u).pathname) }),
            },
            onEvent: (ev) => {
              // Typed by its name: each branch sees its own schema's fields.
              if (ev.event === 'progress') seen.push({ event: ev.event, step: ev.step, loss: ev.loss, all: ev });
              else seen.push({ event: ev.event, path: ev.uri });
            },
          });
          return { reused: false, loss };
        },
      }),
    );

    expect(summary).toStrictEqual({ reused: false, loss: 0.25 });
    expect(seen).toStrictEqual([
      { event: 'progress', step: 1, loss: 0.5, all: { event: 'progress', step: 1, loss: 0.5 } }, // junk stripped
      { event: 'checkpoint', path: '/ckpt-1' }, // the schema's transform applied
      { event: 'progress', step: 2, loss: 0.25, all: { event: 'progress', step: 2, loss: 0.25 } },
    ]);
  });

  test('an event that does not fit fails the step (non-retryable PythonOutputError) and stops Python at once', async () => {
    const { store, deps, env } = setup();
    const pidFile = path.join(tmp, 'bad-event.pid');
    const onEvent = jest.fn();
    let pgid = 0;
    const started = Date.now();

    const err = await failure(
      env.run(
        runPythonStep<Summary, Beat>,
        deps,
        step({
          work: async (ctx) => {
            const { loss } = await ctx.python({
              module: 'fake.bad-event',
              args: [pidFile],
              result: Result,
              events: { progress: z.object({ step: z.number(), loss: z.number() }) },
              onEvent,
              onStart: (pid) => (pgid = pid),
            });
            return { reused: false, loss };
          },
        }),
      ),
    );
    const elapsed = Date.now() - started;

    const f = asApplicationFailure(err);
    expect(f.type).toBe('PythonOutputError');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('fake.bad-event progress event');
    expect(f.message).toMatch(/\bstep: .*number/);
    expect(onEvent).not.toHaveBeenCalled();
    expect(store.objects.size).toBe(0);
    // Neither the 30 s sleep nor the 5 s SIGKILL grace was waited for.
    expect(elapsed).toBeLessThan(2500);
    const [leader, sleeper] = readPids(pidFile);
    expect(leader).toBe(pgid);
    expect(await groupGone(pgid)).toEqual([]);
    expect(liveInGroup(pgid)).not.toContain(sleeper);
  });

  test('a result that does not fit fails the step as a non-retryable PythonOutputError naming the field', async () => {
    const { store, deps, env } = setup();
    const err = await failure(
      env.run(
        runPythonStep<Summary, Beat>,
        deps,
        step({
          work: async (ctx) => {
            const { loss } = await ctx.python({ module: 'fake.bad-result', args: [], result: Result });
            return { reused: false, loss };
          },
        }),
      ),
    );

    const f = asApplicationFailure(err);
    expect(f).toMatchObject({ type: 'PythonOutputError', nonRetryable: true });
    expect(f.message).toContain('fake.bad-result result');
    expect(f.message).toMatch(/\bloss: /);
    expect(store.objects.size).toBe(0);
  });
});

describe('runPythonStep: Python errors', () => {
  const nonRetryable = ['DataError', { python: 'ConfigError', as: 'BadConfig' }] as const;
  const failWith = async (type: string) => {
    const { store, deps, env } = setup();
    const err = await failure(
      env.run(
        runPythonStep<Summary, Beat>,
        deps,
        step({
          nonRetryable,
          work: async (ctx) => {
            const { loss } = await ctx.python({ module: 'fake.error', args: [type, 'bad rows'], result: Result });
            return { reused: false, loss };
          },
        }),
      ),
    );
    expect(store.objects.size).toBe(0);
    return err;
  };

  test('a listed Python error type becomes a non-retryable ApplicationFailure of that type', async () => {
    const f = asApplicationFailure(await failWith('DataError'));
    expect(f.type).toBe('DataError');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toBe('fake.error failed: DataError: bad rows');
  });

  test('a renamed one ({ python, as }) becomes a non-retryable ApplicationFailure of the new type', async () => {
    const f = asApplicationFailure(await failWith('ConfigError'));
    expect(f.type).toBe('BadConfig');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('ConfigError: bad rows');
  });

  test.each(['SomethingFlaky', 'BadConfig'])('an unlisted type (%s) stays retryable', async (type) => {
    const err = await failWith(type);
    expect(err).not.toBeInstanceOf(ApplicationFailure);
    expect(err).toBeInstanceOf(PythonStepError);
    expect(err).toMatchObject({ errorType: type, step: 'fake.error' });
    expect((err as PythonStepError).stderrTail).toContain('Traceback');
  });
});

describe('runPythonStep: cancellation', () => {
  test('cancelling while Python runs fails with CancelledFailure and the whole process group is gone', async () => {
    const { store, deps, env } = setup();
    const pidFile = path.join(tmp, 'sleep.pid');
    let pgid = 0;
    let liveBeforeCancel: number[] = [];
    const started = Date.now();

    const err = await failure(
      env.run(
        runPythonStep<Summary, Beat>,
        deps,
        step({
          work: async (ctx) => {
            const { loss } = await ctx.python({
              module: 'fake.sleep',
              args: [pidFile],
              result: Result,
              events: { started: z.object({}) },
              onStart: (pid) => (pgid = pid),
              onEvent: () => {
                liveBeforeCancel = liveInGroup(pgid);
                env.cancel();
              },
            });
            return { reused: false, loss };
          },
        }),
      ),
    );

    expect(err).toBeInstanceOf(CancelledFailure);
    expect((err as CancelledFailure).message).toContain('unit cancelled');
    expect(Date.now() - started).toBeLessThan(2500);
    const [leader, sleeper] = readPids(pidFile);
    expect(leader).toBe(pgid);
    // Both the interpreter and its child were running when the activity was cancelled ...
    expect(liveBeforeCancel).toEqual(expect.arrayContaining([leader, sleeper]));
    // ... and nothing of the group survives it.
    expect(await groupGone(pgid)).toEqual([]);
    expect(store.objects.size).toBe(0);
  });
});

describe('runPythonStep: heartbeats', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  test('patches merge into the details, a function replaces them, and they are re-sent until the step ends', async () => {
    // Only the timers are faked: the ticker is a 5 s setInterval.
    jest.useFakeTimers({
      doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate'],
    });
    const { deps, env, beats } = setup();
    const initial: Beat = { phase: 'load' };
    const started = deferred<StepContext<Beat>>();
    const finish = deferred<undefined>();

    const running = env.run(
      runPythonStep<Summary, Beat>,
      deps,
      step({
        heartbeat: initial,
        work: async (ctx) => {
          started.resolve(ctx);
          await finish.promise;
          return { reused: false, loss: 1 };
        },
      }),
    );
    const ctx = await started.promise;

    expect(beats).toEqual([]);
    jest.advanceTimersByTime(5000);
    expect(beats).toStrictEqual([{ phase: 'load' }]);

    ctx.heartbeat({ epoch: 1 });
    expect(beats.at(-1)).toStrictEqual({ phase: 'load', epoch: 1 });
    ctx.heartbeat({ note: 'resumed' });
    expect(beats.at(-1)).toStrictEqual({ phase: 'load', epoch: 1, note: 'resumed' });

    let seenByFunction: Beat | undefined;
    ctx.heartbeat((current) => {
      seenByFunction = current;
      return { phase: 'export', epoch: current.epoch! + 1 };
    });
    expect(seenByFunction).toStrictEqual({ phase: 'load', epoch: 1, note: 'resumed' });
    expect(beats.at(-1)).toStrictEqual({ phase: 'export', epoch: 2 }); // `note` gone: replaced, not merged
    expect(initial).toStrictEqual({ phase: 'load' }); // the step's initial details are not mutated

    // The ticker re-sends the current details.
    const before = beats.length;
    jest.advanceTimersByTime(10_000);
    expect(beats.slice(before)).toStrictEqual([
      { phase: 'export', epoch: 2 },
      { phase: 'export', epoch: 2 },
    ]);

    finish.resolve(undefined);
    await expect(running).resolves.toStrictEqual({ reused: false, loss: 1 });
    const after = beats.length;
    jest.advanceTimersByTime(30_000);
    expect(beats).toHaveLength(after); // the ticker stops with the step
  });
});

describe('runPython', () => {
  test('JSON lines that are not events (null, a number, an object without `event`) are output, not a crash', async () => {
    const result = await runPython({ module: 'fake.stray-json', args: [], python });
    expect(result).toStrictEqual({ event: 'result', loss: 0.25 });
  });

  test('runs `<python> -m <module> <args...>` from the repository root, wherever the worker runs', async () => {
    const cwd = process.cwd();
    process.chdir(tmp); // the child must not just inherit the test's working directory
    const result = await runPython({ module: 'fake.result', args: ['--epochs', '3', 'a b'], python }).finally(() =>
      process.chdir(cwd),
    );
    expect(result).toStrictEqual({
      event: 'result',
      loss: 0.25,
      cwd: fs.realpathSync(REPO_ROOT),
      args: '--epochs 3 a b',
    });
    expect(REPO_ROOT).toBe(path.resolve(__dirname, '..', '..', '..'));
  });

  test('with nprocPerNode, runs the torchrun next to the interpreter', async () => {
    const result = await runPython({ module: 'fake.result', args: ['--x', '1'], nprocPerNode: 2, python });
    expect(result).toStrictEqual({
      event: 'result',
      argv: '--standalone --nproc_per_node=2 -m fake.result --x 1',
    });
    expect(invocations()).toEqual([]); // not the interpreter itself
  });

  test('hands every event to onEvent in order, one at a time, and skips lines that are not JSON', async () => {
    const order: string[] = [];
    const events: PythonEvent[] = [];
    await runPython({
      module: 'fake.events',
      args: [],
      python,
      onEvent: async (ev) => {
        order.push(`begin ${ev.event}`);
        if (ev.event === 'start') await new Promise((r) => setTimeout(r, 50)); // slow handler: the rest must wait
        events.push(ev);
        order.push(`end ${ev.event}`);
      },
    });
    expect(events.map((e) => e.event)).toEqual(['start', 'progress', 'checkpoint', 'progress', 'result']);
    expect(events[1]).toStrictEqual({ event: 'progress', step: 1, loss: 0.5, junk: 'dropped by the schema' });
    expect(order.slice(0, 3)).toEqual(['begin start', 'end start', 'begin progress']);
  });

  test('a non-zero exit without an error event fails as ExitCode<n> with the stderr tail', async () => {
    const err = await failure(runPython({ module: 'fake.crash', args: [], python }));
    expect(err).toBeInstanceOf(PythonStepError);
    expect(err).toMatchObject({ errorType: 'ExitCode3', step: 'fake.crash' });
    expect((err as Error).message).toContain('Segmentation fault in the loader');
  });

  test('a failing event handler stops the process at once and is what runPython throws', async () => {
    const pidFile = path.join(tmp, 'handler.pid');
    const boom = new Error('checkpoint upload failed');
    let pgid = 0;
    const started = Date.now();

    const err = await failure(
      runPython({
        module: 'fake.sleep',
        args: [pidFile],
        python,
        onStart: (pid) => (pgid = pid),
        onEvent: () => Promise.reject(boom),
      }),
    );

    expect(err).toBe(boom);
    expect(Date.now() - started).toBeLessThan(2500);
    expect(readPids(pidFile)[0]).toBe(pgid);
    expect(await groupGone(pgid)).toEqual([]);
  });

  test('an already aborted signal fails as Cancelled', async () => {
    const err = await failure(
      runPython({ module: 'fake.sleep', args: [path.join(tmp, 'aborted.pid')], python, signal: AbortSignal.abort() }),
    );
    expect(err).toBeInstanceOf(PythonStepError);
    expect(err).toMatchObject({ errorType: 'Cancelled', step: 'fake.sleep' });
  });
});
