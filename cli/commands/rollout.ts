/**
 * `recsys rollout start|status|approve|reject|abort|history`: steer the `rollout` workflow of a model version.
 * Decisions are Temporal updates carrying who and why, so the workflow history is the audit log that `history` prints.
 */
import os from 'node:os';
import fs from 'node:fs';
import type { Command } from 'commander';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { config } from '../../lib/config';
import { parseRolloutConfig } from '../../lib/rollout/config';
import { RecsysModel, RecsysModelVersion, RecsysTrigger } from '../../lib/search-attributes';
import {
  abortUpdate,
  approveUpdate,
  rejectUpdate,
  rolloutStateQuery,
  rolloutWorkflowId,
  type Decision,
  type RolloutResult,
  type RolloutState,
} from '../../workflows/rollout-api';
import { rollout } from '../../workflows/rollout';
import { table } from '../format';
import { temporalClient, webUiUrl } from '../temporal';

const who = () => `${os.userInfo().username}@${os.hostname()}`;

export function printRolloutState(s: RolloutState): void {
  console.log(
    `${s.model} v${s.version}${s.baseline ? ` vs champion v${s.baseline}` : ''}: ${s.phase}` +
      (s.step && s.phase === 'canary' ? ` (step ${s.step.index}/${s.step.of}, ${s.step.weight}%)` : ''),
  );
  const weights = Object.entries(s.weights);
  if (weights.length > 0) console.log(`production traffic: ${weights.map(([v, w]) => `v${v} ${w}%`).join(', ')}`);
  if (s.staging)
    console.log(
      `staging load test: ${s.staging.requests} requests, errors ${(s.staging.errorRate * 100).toFixed(2)}%, ` +
        `p50 ${(s.staging.p50Ms ?? NaN).toFixed(1)} ms, p99 ${(s.staging.p99Ms ?? NaN).toFixed(1)} ms`,
    );
  if (s.analyses.length > 0) {
    console.log('\nCanary analyses:');
    console.log(
      table(
        ['step', 'weight', 'outcome', 'canary req', 'base req', 'canary CTR', 'base CTR', 'canary p99', 'base p99'],
        s.analyses.map((a) => [
          a.step,
          `${a.weight}%`,
          a.result.outcome,
          a.result.canary.requests,
          a.result.baseline.requests,
          `${(a.result.canary.ctr * 100).toFixed(1)}%`,
          `${(a.result.baseline.ctr * 100).toFixed(1)}%`,
          `${a.result.canary.p99Ms.toFixed(1)} ms`,
          `${a.result.baseline.p99Ms.toFixed(1)} ms`,
        ]),
      ),
    );
    console.log(`latest: ${s.latestAnalysis?.summary ?? ''}`);
  }
  if (s.decision)
    console.log(`decision: ${s.decision.verdict} by ${s.decision.by} at ${s.decision.at}: ${s.decision.reason}`);
  if (s.outcome) console.log(`outcome: ${s.outcome}: ${s.reason ?? ''}`);
  console.log('\nEvents:');
  for (const e of s.events) console.log(`  ${e.at}  ${e.what}`);
}

async function decide(
  update: typeof approveUpdate,
  model: string,
  version: string,
  opts: { by?: string; reason: string },
): Promise<void> {
  const client = await temporalClient();
  const id = rolloutWorkflowId(model, version);
  const decision: Decision = { by: opts.by ?? who(), reason: opts.reason };
  try {
    const state = await client.workflow.getHandle(id).executeUpdate(update, { args: [decision] });
    console.log(`${update.name} recorded on ${id} by ${decision.by} (phase was ${state.phase})`);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      console.error(`recsys: ${update.name} refused by ${id}: ${err.cause?.message ?? err.message}`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

async function history(client: Client, model: string): Promise<void> {
  const query = `WorkflowType = 'rollout' AND RecsysModel = '${model.replace(/'/g, "\\'")}'`;
  const rows: (string | number)[][] = [];
  for await (const wf of client.workflow.list({ query })) {
    const handle = client.workflow.getHandle(wf.workflowId, wf.runId);
    let what: string = wf.status.name;
    let detail = '';
    if (wf.status.name === 'COMPLETED') {
      const r = (await handle.result()) as RolloutResult;
      what = r.outcome;
      detail = r.reason;
    } else if (wf.status.name === 'RUNNING') {
      const s = await handle.query(rolloutStateQuery);
      what = `running: ${s.phase}`;
      detail = s.latestAnalysis?.summary ?? '';
    }
    const version = wf.typedSearchAttributes.get(RecsysModelVersion) ?? '?';
    rows.push([
      wf.startTime.toISOString().replace(/\.\d+Z$/, 'Z'),
      `v${version}`,
      what,
      wf.closeTime ? wf.closeTime.toISOString().replace(/\.\d+Z$/, 'Z') : '',
      detail.length > 110 ? `${detail.slice(0, 107)}...` : detail,
    ]);
  }
  if (rows.length === 0) {
    console.log(`no rollouts of ${model}`);
    return;
  }
  rows.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  console.log(table(['started', 'version', 'outcome', 'closed', 'who / why'], rows));
}

export function registerRolloutCommand(program: Command): void {
  const cmd = program.command('rollout').description('staged rollouts: staging → canary → approval → production');

  cmd
    .command('start')
    .description('start the rollout of a registered version (workflow id rollout-<model>-v<version>)')
    .argument('<model>')
    .argument('<version>')
    .option('--config <file>', 'rollout config JSON (steps, bake times, analysis thresholds, approval timeout)')
    .option('--wait', 'follow it to the end', false)
    .action(async (model: string, version: string, opts: { config?: string; wait: boolean }) => {
      const rolloutConfig = opts.config ? (JSON.parse(fs.readFileSync(opts.config, 'utf8')) as unknown) : {};
      parseRolloutConfig(rolloutConfig, opts.config); // fail here, not in the workflow, on a bad file
      const client = await temporalClient();
      const workflowId = rolloutWorkflowId(model, version);
      const handle = await client.workflow.start(rollout, {
        taskQueue: config().taskQueue,
        workflowId,
        args: [{ model, version, config: rolloutConfig as object, startedBy: `cli ${who()}` }],
        typedSearchAttributes: [
          { key: RecsysModel, value: model },
          { key: RecsysModelVersion, value: version },
          { key: RecsysTrigger, value: 'manual' },
        ],
        staticSummary: `Rollout of ${model} v${version}`,
      });
      console.log(`Started rollout ${workflowId}`);
      console.log(`Web UI: ${webUiUrl(workflowId, handle.firstExecutionRunId)}`);
      if (opts.wait) {
        const r = await handle.result();
        console.log(`${r.outcome}: ${r.reason}`);
      }
    });

  cmd
    .command('status')
    .description('phase, traffic split and analyses of a rollout')
    .argument('<model>')
    .argument('<version>')
    .action(async (model: string, version: string) => {
      const client = await temporalClient();
      const id = rolloutWorkflowId(model, version);
      const handle = client.workflow.getHandle(id);
      const desc = await handle.describe();
      console.log(`${id}: ${desc.status.name}`);
      printRolloutState(await handle.query(rolloutStateQuery));
      console.log(`\nWeb UI: ${webUiUrl(id, desc.runId)}`);
    });

  for (const [name, update, verb] of [
    ['approve', approveUpdate, 'promote it'],
    ['reject', rejectUpdate, 'roll it back'],
  ] as const) {
    cmd
      .command(name)
      .description(`${name} a rollout waiting for a decision (${verb})`)
      .argument('<model>')
      .argument('<version>')
      .requiredOption('--reason <text>', 'why (recorded in the workflow history and on the version)')
      .option('--by <who>', 'who decides (default: user@host)')
      .action((model: string, version: string, opts: { by?: string; reason: string }) =>
        decide(update, model, version, opts),
      );
  }

  cmd
    .command('abort')
    .description('stop a rollout now and undo what it changed (traffic, alias)')
    .argument('<model>')
    .argument('<version>')
    .requiredOption('--reason <text>', 'why')
    .option('--by <who>', 'who (default: user@host)')
    .action((model: string, version: string, opts: { by?: string; reason: string }) =>
      decide(abortUpdate, model, version, opts),
    );

  cmd
    .command('watch')
    .description('follow a rollout, printing its events, until it waits for a human or ends')
    .argument('<model>')
    .argument('<version>')
    .option('--until <when>', 'decision (waiting for approve/reject) | done', 'decision')
    .option('--timeout <seconds>', 'give up after this long', (v) => Number(v), 1800)
    .option('--skip <n>', 'do not print the first n events (already shown)', (v) => Number(v), 0)
    .action(
      async (model: string, version: string, opts: { until: 'decision' | 'done'; timeout: number; skip: number }) => {
        const client = await temporalClient();
        const id = rolloutWorkflowId(model, version);
        const handle = client.workflow.getHandle(id);
        const deadline = Date.now() + opts.timeout * 1000;
        let seen = -1;
        for (;;) {
          let state: RolloutState | undefined;
          try {
            state = await handle.query(rolloutStateQuery);
          } catch {
            // not started yet, or between workflow tasks: ask again
          }
          if (state) {
            if (seen < 0) seen = opts.skip;
            for (const e of state.events.slice(seen)) console.log(`${e.at.slice(11, 19)}  ${e.what}`);
            seen = state.events.length;
            const waiting = state.phase === 'awaiting-approval' || state.phase === 'awaiting-traffic-decision';
            if (state.outcome || (opts.until === 'decision' && waiting)) {
              console.log(state.outcome ? `${state.outcome}: ${state.reason ?? ''}` : `waiting: ${state.phase}`);
              return;
            }
          }
          if (Date.now() > deadline)
            throw new Error(`${id}: still ${state?.phase ?? 'not started'} after ${opts.timeout} s`);
          await new Promise((r) => setTimeout(r, 1000));
        }
      },
    );

  cmd
    .command('history')
    .description('every rollout of a model: when, which version, outcome, who decided and why')
    .argument('<model>')
    .action(async (model: string) => history(await temporalClient(), model));
}
