/**
 * `recsys drift start|status|pause|resume|rebaseline|configure|report|stop`: run and steer the `driftMonitor` of a
 * model in one serving environment. The monitor is a workflow (`drift-monitor-<model>-<env>`), so everything here is
 * a start, a query, a signal or an update, and the Web UI shows the same state (current details, RecsysDrift).
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { config } from '../../lib/config';
import { parseDriftConfig, type DriftConfigInput } from '../../lib/drift/config';
import type { SignalResult } from '../../lib/drift/evaluate';
import { objectStore } from '../../lib/object-store';
import { RecsysDrift, RecsysModel } from '../../lib/search-attributes';
import {
  configureUpdate,
  driftMonitorId,
  driftStatusQuery,
  pauseSignal,
  rebaselineSignal,
  resumeSignal,
  type DriftMonitorView,
} from '../../workflows/drift-api';
import { driftMonitor } from '../../workflows/drift-monitor';
import { fmtNum, table } from '../format';
import { parseOverrides } from '../schedule-spec';
import { temporalClient, webUiUrl } from '../temporal';

interface EnvOption {
  env: string;
}

/** --config takes a JSON object or @file.json. */
function configArg(raw: string | undefined): DriftConfigInput | undefined {
  if (raw === undefined) return undefined;
  const text = raw.startsWith('@') ? fs.readFileSync(raw.slice(1), 'utf8') : raw;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(
      `--config is not JSON (${raw.startsWith('@') ? raw.slice(1) : 'inline'}): ${(err as Error).message}`,
    );
  }
  parseDriftConfig(parsed); // names the field and value that is wrong
  return parsed as DriftConfigInput;
}

const time = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

export function printDriftView(v: DriftMonitorView): void {
  const s = v.state;
  console.log(
    `${v.model} in ${v.env}: ${v.status}` +
      (s.paused ? ` (${s.pauseReason ?? 'paused'})` : '') +
      `; windows of ${s.config.intervalSeconds} s, grace ${s.config.graceSeconds} s, next ends ${v.nextWindowAt}`,
  );
  const b = s.baseline;
  console.log(
    b
      ? `baseline: champion v${b.championVersion} (${b.datasetVersion}), ${b.windowUris.length}/${s.config.baselineWindows} windows since ${b.since}: ${b.reason}`
      : 'baseline: none yet',
  );
  const c = s.counts;
  console.log(
    `windows ${c.windows} (drift ${c.drift}, insufficient ${c.insufficient}); retrains started ${c.retrainsStarted}, ` +
      `absorbed ${c.absorbed}, suppressed ${c.suppressed}` +
      (s.lastRetrain
        ? `; last: ${s.lastRetrain.workflowId} ${s.lastRetrain.outcome} at ${time(s.lastRetrain.atMs)}`
        : ''),
  );
  if (s.windows.length === 0) return;
  console.log('');
  console.log(
    table(
      ['window (UTC)', 'status', 'requests', 'feedback', 'breached', 'confirmed', 'action / reason'],
      s.windows
        .slice(-12)
        .map((w) => [
          `${time(w.windowStartMs)} +${Math.round((w.windowEndMs - w.windowStartMs) / 1000)}s`,
          w.status,
          w.requests,
          w.feedback,
          w.breached.join(',') || '-',
          w.confirmed.join(',') || '-',
          w.action ?? w.reason,
        ]),
    ),
  );
}

function printSignals(signals: SignalResult[]): void {
  console.log(
    table(
      ['signal', 'role', 'metric', 'value', 'threshold', 'p-value', 'n ref', 'n cur', 'breached', 'note'],
      signals.map((s) => [
        s.name,
        s.role,
        s.metric,
        s.value === null || s.value === undefined ? '-' : fmtNum(s.value),
        fmtNum(s.threshold),
        s.pValue === null || s.pValue === undefined ? '-' : s.pValue.toExponential(2),
        s.n.reference,
        s.n.current,
        s.breached ? 'yes' : 'no',
        s.insufficient ?? '',
      ]),
    ),
  );
}

export function registerDriftCommand(program: Command): void {
  const drift = program
    .command('drift')
    .description('drift monitors on served traffic: start, watch, steer (workflow drift-monitor-<model>-<env>)');
  const envOpt = ['--env <environment>', 'serving environment watched', 'production'] as const;
  const handle = async (model: string, env: string) =>
    (await temporalClient()).workflow.getHandle(driftMonitorId(model, env));

  drift
    .command('start <model>')
    .description('start the monitor (already running: leaves it, applying --config if given)')
    .option(...envOpt)
    .option('--config <json>', 'drift config (JSON or @file.json); defaults in lib/drift/config.ts')
    .option('--continue-as-new-every <windows>', 'windows per run before continuing as new', (v) => Number(v))
    .option(
      '--retrain-overrides <json>',
      "what its retrains change from the champion's recipe (validation, gates, ...)",
    )
    .action(
      async (
        model: string,
        opts: EnvOption & { config?: string; continueAsNewEvery?: number; retrainOverrides?: string },
      ) => {
        const cfg = configArg(opts.config);
        const retrain =
          opts.retrainOverrides === undefined
            ? undefined
            : parseOverrides('--retrain-overrides', opts.retrainOverrides);
        const client = await temporalClient();
        const id = driftMonitorId(model, opts.env);
        try {
          await client.workflow.start(driftMonitor, {
            workflowId: id,
            taskQueue: config().taskQueue,
            args: [{ model, env: opts.env, config: cfg, retrain, continueAsNewEvery: opts.continueAsNewEvery }],
            staticSummary: `Drift monitor of ${model} (${opts.env})`,
            typedSearchAttributes: [
              { key: RecsysModel, value: model },
              { key: RecsysDrift, value: 'starting' },
            ],
          });
          console.log(`Started ${id}: ${webUiUrl(id)}`);
        } catch (err) {
          if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
          console.log(`${id} is already running: ${webUiUrl(id)}`);
          if (cfg) {
            const next = await client.workflow.getHandle(id).executeUpdate(configureUpdate, { args: [cfg] });
            console.log(`Config updated: windows of ${next.intervalSeconds} s`);
          }
        }
      },
    );

  drift
    .command('status <model>')
    .description("the monitor's status, baseline and latest windows")
    .option(...envOpt)
    .option('--json', 'print the state as JSON', false)
    .action(async (model: string, opts: EnvOption & { json: boolean }) => {
      const view = await (await handle(model, opts.env)).query(driftStatusQuery);
      if (opts.json) console.log(JSON.stringify(view, null, 2));
      else printDriftView(view);
    });

  for (const [name, what] of [
    ['pause', 'stop judging windows (traffic while paused is never judged)'],
    ['resume', 'judge windows again from the next whole window'],
    ['rebaseline', 'take the next full windows as the new baseline'],
  ] as const)
    drift
      .command(`${name} <model>`)
      .description(what)
      .option(...envOpt)
      .option('--reason <text>', 'why (shown in the status and the Web UI)')
      .action(async (model: string, opts: EnvOption & { reason?: string }) => {
        const h = await handle(model, opts.env);
        if (name === 'pause') await h.signal(pauseSignal, { reason: opts.reason });
        else if (name === 'resume') await h.signal(resumeSignal);
        else await h.signal(rebaselineSignal, { reason: opts.reason });
        console.log(`${name} sent to ${h.workflowId}`);
      });

  drift
    .command('configure <model>')
    .description('change the config of a running monitor (fields given replace the current ones)')
    .option(...envOpt)
    .requiredOption('--config <json>', 'drift config changes (JSON or @file.json)')
    .action(async (model: string, opts: EnvOption & { config: string }) => {
      const h = await handle(model, opts.env);
      try {
        const next = await h.executeUpdate(configureUpdate, { args: [configArg(opts.config)!] });
        console.log(JSON.stringify(next, null, 2));
      } catch (err) {
        if (err instanceof WorkflowUpdateFailedError) throw new Error(`config rejected: ${err.cause?.message ?? ''}`);
        throw err;
      }
    });

  drift
    .command('report <model>')
    .description("a window's report: every signal's effect size, threshold, p-value and verdict (default: latest)")
    .option(...envOpt)
    .option('--window <n>', 'how many windows back (0: the latest judged one)', (v) => Number(v), 0)
    .option('--json', 'print the report as JSON', false)
    .action(async (model: string, opts: EnvOption & { window: number; json: boolean }) => {
      const view = await (await handle(model, opts.env)).query(driftStatusQuery);
      const judged = view.state.windows.filter((w) => w.reportUri);
      const w = judged[judged.length - 1 - opts.window];
      if (!w?.reportUri)
        throw new Error(
          `${view.model} in ${view.env} has ${judged.length} judged window(s); --window ${opts.window} has no report` +
            (view.state.baseline ? '' : ' (no baseline yet)'),
        );
      const report = (await objectStore().getJson(w.reportUri)) as { verdict: { signals: SignalResult[] } };
      if (opts.json) return console.log(JSON.stringify(report, null, 2));
      console.log(
        `${w.reportUri}\n${time(w.windowStartMs)}: ${w.status}: ${w.reason}${w.action ? `; ${w.action}` : ''}\n`,
      );
      printSignals(report.verdict.signals);
    });

  drift
    .command('wait <model>')
    .description('print each window as it is judged until the monitor reaches a point (for scripts and demos)')
    .option(...envOpt)
    .requiredOption('--for <point>', 'baseline (complete, one window judged), drift (confirmed), retrain (one started)')
    .option('--timeout <seconds>', 'give up after this long (exit 1)', (v) => Number(v), 600)
    .action(async (model: string, opts: EnvOption & { for: string; timeout: number }) => {
      const points = ['baseline', 'drift', 'retrain'];
      if (!points.includes(opts.for)) throw new Error(`--for must be one of ${points.join(', ')}, got ${opts.for}`);
      const h = await handle(model, opts.env);
      const deadline = Date.now() + opts.timeout * 1000;
      const first = await h.query(driftStatusQuery);
      const seen = first.state.counts.windows;
      const retrains = first.state.counts.retrainsStarted;
      let printed = seen;
      for (;;) {
        const v = await h.query(driftStatusQuery);
        const s = v.state;
        const fresh = s.windows.slice(Math.max(0, s.windows.length - (s.counts.windows - printed)));
        for (const w of fresh)
          console.log(
            `${time(w.windowEndMs)}  ${w.status.padEnd(17)} ${String(w.requests).padStart(6)} requests` +
              (w.breached.length ? `  breached: ${w.breached.join(', ')}` : '') +
              (w.confirmed.length ? `  confirmed: ${w.confirmed.join(', ')}` : '') +
              `  ${w.action ?? w.reason}`,
          );
        printed = s.counts.windows;
        const judged = s.windows.filter((w) => w.reportUri).length > 0;
        const done =
          (opts.for === 'baseline' &&
            s.baseline !== null &&
            s.baseline.windowUris.length >= s.config.baselineWindows &&
            judged) ||
          (opts.for === 'drift' && fresh.some((w) => w.status === 'drift')) ||
          (opts.for === 'retrain' && s.counts.retrainsStarted > retrains);
        if (done) {
          if (opts.for === 'retrain') console.log(`retrain: ${s.lastRetrain?.workflowId ?? ''}`);
          return;
        }
        if (Date.now() > deadline)
          throw new Error(`${h.workflowId} did not reach ${opts.for} within ${opts.timeout} s (status ${v.status})`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    });

  drift
    .command('stop <model>')
    .description('stop the monitor (its reports stay in the object store)')
    .option(...envOpt)
    .option('--reason <text>', 'why', 'stopped with recsys drift stop')
    .action(async (model: string, opts: EnvOption & { reason: string }) => {
      const h = await handle(model, opts.env);
      await h.terminate(opts.reason);
      console.log(`Stopped ${h.workflowId}`);
    });
}
