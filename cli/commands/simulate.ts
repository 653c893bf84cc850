/**
 * `recsys simulate`: replays a dataset version's held-out interactions against a serving environment or one server,
 * as Recommend calls at a target rate for a bounded time plus the feedback a user would give (a click when a returned
 * item is one the user really interacted with next), and prints what each served version got. Optionally injects a
 * fault into one version first (the server must run with --allow-faults) and clears it afterwards, also when stopped
 * by SIGINT/SIGTERM; and the fault carries a TTL a little longer than the run, so even a SIGKILLed simulate leaves no
 * broken version behind for long. `--scenario` shifts the traffic the way drift monitors must notice
 * (fleet/simulate/scenarios.ts: popularity-shift, new-items, user-mix, degrade), `--shift` sizes it.
 */
import type { Command } from 'commander';
import { localDataset } from '../../lib/dataset/cache';
import { checkEnv, replicaSlots } from '../../fleet/environments';
import { hasPidFile } from '../../fleet/replicas';
import { simulate } from '../../fleet/simulate/run';
import { setServerFault } from '../../fleet/admin';
import { datasetFromUri, parseFaultSpec, servedDataset, type DatasetTarget } from '../../fleet/simulate/target';
import { expandPopulation, loadCatalogue, loadWorkload } from '../../fleet/simulate/workload';
import {
  DEFAULT_SHIFT,
  SCENARIOS,
  checkShift,
  parseScenarioName,
  prepareScenario,
  type Scenario,
  type ScenarioName,
} from '../../fleet/simulate/scenarios';
import {
  DEFAULT_FAULT_TTL_MS,
  MAX_FAULT_TTL_MS,
  faultOf,
  faultTtlOf,
  isEmptyFault,
  type FaultMessage,
} from '../../serving/faults';
import { table } from '../format';

interface SimulateOptions {
  env?: string;
  address?: string[];
  datasetUri?: string;
  model?: string;
  qps: number;
  seconds: number;
  users?: number;
  population?: number;
  k: number;
  concurrency: number;
  historyLen: number;
  impressions: boolean;
  fault?: string;
  version?: string;
  keepFault: boolean;
  faultTtl?: number;
  allowRemote: boolean;
  json: boolean;
  scenario?: string;
  shift?: number;
}

const num = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${flag} must be a number, got ${JSON.stringify(v)}`);
  return n;
};
const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(',').filter((s) => s !== '')];
const ms = (v: number | null) => (v === null ? '-' : v.toFixed(2));
/** How long the run's fault may outlive the run (dataset already loaded; the last calls get 5 s). */
const FAULT_TTL_SLACK_SECONDS = 60;

/** The fault's TTL in seconds: --fault-ttl, else the run plus some slack (the server's default with --keep-fault). */
export function faultTtlSeconds(opts: { faultTtl?: number; keepFault: boolean; seconds: number }): number {
  const ttl =
    opts.faultTtl ??
    (opts.keepFault
      ? DEFAULT_FAULT_TTL_MS / 1000
      : Math.min(MAX_FAULT_TTL_MS / 1000, Math.ceil(opts.seconds) + FAULT_TTL_SLACK_SECONDS));
  const checked = faultTtlOf(ttl);
  if (typeof checked === 'string' || ttl === 0)
    throw new Error(`--fault-ttl: ${typeof checked === 'string' ? checked : 'must be > 0'}`);
  return ttl;
}

/** --scenario and --shift, checked (before anything loads); undefined without --scenario. */
export function scenarioOf(opts: {
  scenario?: string;
  shift?: number;
}): { name: ScenarioName; shift: number } | undefined {
  if (opts.scenario === undefined) {
    if (opts.shift !== undefined) throw new Error(`--shift ${opts.shift} needs --scenario (${SCENARIOS.join(', ')})`);
    return undefined;
  }
  return {
    name: parseScenarioName('--scenario', opts.scenario),
    shift: checkShift('--shift', opts.shift ?? DEFAULT_SHIFT),
  };
}

function addressesOf(opts: SimulateOptions): string[] {
  if (opts.env && opts.address) throw new Error('give --env or --address, not both');
  if (opts.address) return opts.address;
  if (!opts.env) throw new Error('--env production|staging or --address HOST:PORT is required');
  const live = replicaSlots(checkEnv(opts.env)).filter(hasPidFile);
  if (live.length === 0) throw new Error(`environment ${opts.env} has no replicas (nothing deployed there)`);
  return live.map((r) => r.address);
}

export function registerSimulateCommand(program: Command): void {
  program
    .command('simulate')
    .description('replay held-out interactions as Recommend calls and feedback at a target rate, for a bounded time')
    .option('--env <env>', 'target environment: production or staging')
    .option('--address <host:port>', 'target server(s) instead of an environment (repeat or comma-separate)', collect)
    .option('--dataset-uri <uri>', 'dataset version to replay: s3://<bucket>/datasets/<name>/<version>/')
    .option('--model <name>', 'replay the dataset version of the served model (checked to be <name>)')
    .option('--qps <n>', 'target calls per second (open loop)', num('--qps'), 50)
    .option('--seconds <n>', 'how long to send calls', num('--seconds'), 30)
    .option('--users <n>', 'replay only the first N test users', num('--users'))
    .option(
      '--population <n>',
      'replay the users as N pseudonymous ids (<id>~<k>) spread over sticky assignments',
      num('--population'),
    )
    .option('--k <n>', 'items per call (clicks are judged on these)', num('--k'), 10)
    .option('--concurrency <n>', 'cap on calls in flight (calls due beyond it are dropped)', num('--concurrency'), 64)
    .option('--history-len <n>', 'items of history sent per call', num('--history-len'), 50)
    .option('--no-impressions', 'send no impression feedback for answers without a click')
    .option('--fault <spec>', 'inject into --version first: latency=200ms, errors=0.2, random (comma-separated), none')
    .option('--version <v>', 'the model version --fault applies to')
    .option('--keep-fault', 'leave the fault in place after the run (default: cleared); it still expires', false)
    .option(
      '--fault-ttl <s>',
      `the fault expires by itself after this long (default: the run + ${FAULT_TTL_SLACK_SECONDS} s; ` +
        `${DEFAULT_FAULT_TTL_MS / 1000} with --keep-fault; at most ${MAX_FAULT_TTL_MS / 1000})`,
      num('--fault-ttl'),
    )
    .option(
      '--scenario <name>',
      `shift the traffic as drift monitors must notice: ${SCENARIOS.join(', ')} (fleet/simulate/scenarios.ts)`,
    )
    .option('--shift <size>', `size of the --scenario, in (0, 1] (default ${DEFAULT_SHIFT})`, num('--shift'))
    .option('--allow-remote', 'allow non-loopback addresses', false)
    .option('--json', 'print the result as JSON', false)
    .action(async (opts: SimulateOptions) => {
      const addresses = addressesOf(opts);
      const wanted = scenarioOf(opts);
      if (opts.datasetUri && opts.model) throw new Error('give --dataset-uri or --model, not both');
      let fault: FaultMessage | undefined;
      let clears = false;
      let ttlSeconds = 0;
      if (opts.fault !== undefined) {
        fault = parseFaultSpec(opts.fault);
        const checked = faultOf(fault);
        if (typeof checked === 'string') throw new Error(`--fault: ${checked}`);
        clears = isEmptyFault(checked);
        if (!opts.version) throw new Error('--fault needs --version (the model version to inject it into)');
        ttlSeconds = faultTtlSeconds(opts);
      }
      const dataset: DatasetTarget = opts.datasetUri
        ? datasetFromUri(opts.datasetUri)
        : await servedDataset(addresses[0]!, opts.model);
      const dir = await localDataset(dataset.manifestUri);
      const loaded = await loadWorkload(dir, { historyLen: opts.historyLen, maxUsers: opts.users });
      const users = opts.population ? expandPopulation(loaded, opts.population) : loaded;
      const scenario: Scenario | undefined =
        wanted && prepareScenario(wanted.name, wanted.shift, await loadCatalogue(dir));
      const log = (s: string) => {
        if (!opts.json) console.log(s);
      };
      // Tests and infra/proc.sh wait for a line starting `Replaying`: keep its start.
      log(
        `Replaying ${users.length} test users of ${dataset.name}@${dataset.version} against ${addresses.join(', ')}` +
          (scenario ? `, scenario ${scenario.name} with shift ${scenario.shift}` : ''),
      );
      log(`${opts.qps} calls/s for ${opts.seconds} s, k ${opts.k}, at most ${opts.concurrency} in flight`);
      const clearFault = () =>
        Promise.all(
          addresses.map((a) => setServerFault(a, opts.version!, parseFaultSpec('none'), 5000).catch(() => undefined)),
        );
      const mustClear = fault !== undefined && !clears && !opts.keepFault;
      // Installed before the fault is set: a signal while it is being set still clears it everywhere.
      const onSignal = (signal: NodeJS.Signals) => {
        console.error(`${signal}: clearing the fault on version ${opts.version}`);
        void clearFault().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
      };
      if (mustClear) {
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
      }
      if (fault) {
        for (const a of addresses) await setServerFault(a, opts.version!, fault, 10_000, ttlSeconds);
        log(`Fault on version ${opts.version}: ${clears ? 'cleared' : `${opts.fault} (expires in ${ttlSeconds} s)`}`);
      }
      try {
        const r = await simulate({
          addresses,
          users,
          qps: opts.qps,
          seconds: opts.seconds,
          k: opts.k,
          concurrency: opts.concurrency,
          impressions: opts.impressions,
          allowRemote: opts.allowRemote,
          scenario,
          onProgress: (p) => {
            if (!opts.json && process.stdout.isTTY)
              process.stdout.write(`\r${p.elapsedSeconds.toFixed(0)} s: ${p.requests} calls, ${p.errors} errors`);
          },
        });
        if (!opts.json && process.stdout.isTTY) process.stdout.write('\n');
        if (opts.json) {
          console.log(JSON.stringify({ dataset, addresses, scenario: wanted ?? null, ...r }, null, 2));
          return;
        }
        console.log(
          table(
            ['version', 'requests', 'p50 ms', 'p99 ms', 'clicks', 'CTR', 'hits'],
            Object.entries(r.perVersion).map(([v, s]) => [
              v,
              s.requests,
              ms(s.p50Ms),
              ms(s.p99Ms),
              s.clicks,
              s.ctr,
              s.hits,
            ]),
          ),
        );
        const codes = Object.entries(r.errorsByCode)
          .map(([c, n]) => `${c} ${n}`)
          .join(', ');
        console.log(
          `\nTotal: ${r.requests} calls (${r.achievedQps.toFixed(1)}/s), ${r.errors} errors` +
            `${codes ? ` (${codes})` : ''}, error rate ${(100 * r.errorRate).toFixed(2)}%, ` +
            `p50 ${ms(r.p50Ms)} ms, p99 ${ms(r.p99Ms)} ms, CTR ${r.ctr.toFixed(4)}` +
            (r.dropped > 0 ? `, ${r.dropped} dropped at the concurrency cap` : '') +
            (scenario ? `, ${r.shifted} calls shifted by ${scenario.name}` : '') +
            (r.feedbackErrors > 0 ? `, ${r.feedbackErrors} feedback calls failed` : ''),
        );
      } finally {
        if (mustClear) {
          process.removeListener('SIGINT', onSignal);
          process.removeListener('SIGTERM', onSignal);
          await clearFault();
          log(`Fault on version ${opts.version} cleared`);
        }
      }
    });
}
