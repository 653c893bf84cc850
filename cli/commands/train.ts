/** `recsys train`: upload raw logs if local, start continuousTraining, optionally follow it to the end. */
import { familyOf } from '../../lib/model-family';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import type { TrainHeartbeat } from '../../activities/contracts';
import { config } from '../../lib/config';
import { EtlConfig } from '../../lib/dataset/etl-config';
import { RAW_FORMATS } from '../../lib/dataset/raw-formats';
import { parseSources, sourceUri, type SourceSpecInput } from '../../lib/dataset/source';
import { sha256File } from '../../lib/files';
import { parseClusterSpec } from '../../lib/cluster-spec';
import { parseGateConfig } from '../../lib/gates/config';
import { objectStore } from '../../lib/object-store';
import { RecsysModel, RecsysTrigger } from '../../lib/search-attributes';
import { continuousTraining } from '../../workflows/continuous-training';
import {
  progressQuery,
  trainingWorkflowId,
  type ContinuousTrainingInput,
  type ContinuousTrainingResult,
} from '../../workflows/training-api';
import { duration, table } from '../format';
import { pendingActivities, temporalClient, webUiUrl } from '../temporal';

/** A local file is uploaded once, content-addressed; an s3:// URI is used as it is. */
async function stageSource(dataset: string, src: string): Promise<string> {
  if (src.startsWith('s3://')) return src;
  const store = objectStore();
  const sha = await sha256File(src);
  const uri = `s3://${config().bucket}/raw/${dataset}/${sha.slice(0, 16)}/${path.basename(src)}`;
  if (!(await store.exists(uri))) await store.putFile(uri, src);
  return uri;
}

/** Local files are uploaded once, content-addressed; s3:// URIs are used as they are. */
export async function stageSources(dataset: string, sources: string[]): Promise<string[]> {
  const uris: string[] = [];
  for (const src of sources) uris.push(await stageSource(dataset, src));
  return uris;
}

/** Sources with their own reading: their uri staged like any source, the reading kept. */
async function stageSpecs(dataset: string, sources: SourceSpecInput[]): Promise<SourceSpecInput[]> {
  const out: SourceSpecInput[] = [];
  for (const s of sources) {
    const uri = await stageSource(dataset, sourceUri(s));
    out.push(typeof s === 'string' ? uri : { ...s, uri });
  }
  return out;
}

/**
 * The sources of `--source` (read with --format and --etl) followed by those of `--source-spec` (JSON, each with its
 * own reading), checked against the ETL config before anything is uploaded or started: an error names the source's
 * index in this list, the field and the value.
 */
export function sourcesFromArgs(paths: string[], specs: string[], etl: object): SourceSpecInput[] {
  const sources: SourceSpecInput[] = [...paths];
  for (const [i, text] of specs.entries()) {
    try {
      sources.push(JSON.parse(text) as SourceSpecInput);
    } catch (err) {
      throw new Error(
        `--source-spec ${JSON.stringify(text)} (sources[${paths.length + i}]) is not JSON: ${(err as Error).message}`,
      );
    }
  }
  const cfg = EtlConfig.safeParse(etl);
  if (!cfg.success) throw new Error(`invalid ETL config (--format, --etl): ${cfg.error.message}`);
  parseSources(sources, cfg.data);
  return sources;
}

/** Parses `key=value` overrides: numbers and booleans become numbers and booleans. */
export function parseOverrides(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--set expects key=value, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    out[key] =
      raw === 'true' ? true : raw === 'false' ? false : raw !== '' && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  }
  return out;
}

function describeHeartbeat(type: string, details: unknown): string {
  if (!details || typeof details !== 'object') return type;
  if (type === 'train') {
    const h = details as TrainHeartbeat;
    if (h.stage === 'train' && h.epoch !== undefined) {
      const ckpt = h.checkpointEpoch ? `, checkpoint epoch ${h.checkpointEpoch}` : '';
      return (
        `train: epoch ${h.epoch}/${h.epochs ?? '?'} step ${h.step ?? '?'}/${h.stepsPerEpoch ?? '?'} ` +
        `loss ${(h.loss ?? NaN).toFixed(4)} (${Math.round(h.samplesPerSec ?? 0)} samples/s${ckpt})`
      );
    }
  }
  return `${type}: ${JSON.stringify(details)}`;
}

export function printResult(r: ContinuousTrainingResult): void {
  const metrics = ['recall@10', 'ndcg@10', 'hr@10', 'mrr'];
  const family = familyOf(r.training.config);
  console.log('\nOffline evaluation on the test split (full ranking, time split):');
  console.log(
    table(
      ['ranker', ...metrics],
      [
        [`${family} v${r.registered.version}`, ...metrics.map((m) => r.evaluation.model[m] ?? NaN)],
        ['popularity', ...metrics.map((m) => r.evaluation.popularity[m] ?? NaN)],
      ],
    ),
  );
  console.log(`\n${r.evaluation.nUsers} test users (${r.evaluation.nColdUsers} without history)`);
  console.log('\nPromotion gates (95% bootstrap intervals):');
  console.log(
    table(
      ['gate', 'outcome', 'detail'],
      r.gates.checks.map((c) => [c.gate, c.outcome, c.detail]),
    ),
  );
  const q = r.quantization;
  if (!q) console.log('\nQuantization: none');
  else {
    console.log(
      `\nQuantization: ships ${q.ships} — ${q.reason}\n` +
        `  fp32 NDCG@10 ${q.float.ndcgAt10.toFixed(4)}, p50 ${q.float.p50Ms.toFixed(3)} ms, p99 ${q.float.p99Ms.toFixed(3)} ms\n` +
        `  int8 NDCG@10 ${q.int8.ndcgAt10.toFixed(4)}, p50 ${q.int8.p50Ms.toFixed(3)} ms, p99 ${q.int8.p99Ms.toFixed(3)} ms`,
    );
    // A cascade's stages, each decided on its own speed and the cascade's NDCG with it int8.
    for (const s of q.stages ?? [])
      console.log(
        `  ${s.name}: ships ${s.ships}; p50 ratio ${s.p50Ratio.toFixed(2)} [${s.p50RatioLo.toFixed(2)}, ` +
          `${s.p50RatioHi.toFixed(2)}]; cascade NDCG@10 ${s.ndcgAt10.toFixed(4)} with ${s.int8Stages.join('+')} int8 ` +
          `(${(s.relativeNdcgChange * 100).toFixed(2)}% vs fp32)`,
      );
  }
  console.log('\nSteps:');
  console.log(
    table(
      ['step', 'seconds', 'outcome'],
      Object.entries(r.stepSeconds).map(([k, v]) => [k, duration(v), reusedStep(r, k) ? 'reused' : 'done']),
    ),
  );
  console.log(
    `\nDataset:   ${r.dataset.name}@${r.dataset.version} ${r.dataset.uri}${r.dataset.reused ? ' (reused)' : ''}`,
  );
  if (r.plan)
    console.log(
      `Planned:   from champion v${r.plan.basedOn.championVersion} (${r.plan.basedOn.datasetVersion}) + ` +
        `${r.plan.feedback.rows} served feedback interactions${r.plan.feedback.uri ? ` (${r.plan.feedback.uri})` : ''}`,
    );
  console.log(`Validation: ${r.validation.summary} (${r.validation.reportUri})`);
  console.log(`Model:     ${r.registered.model} v${r.registered.version}  aliases: ${r.registered.aliases.join(', ')}`);
  console.log(`Outcome:   ${r.outcome}: ${r.registered.decision}`);
  if (r.rollout)
    console.log(
      `Rollout:   ${r.rollout.workflowId} (recsys rollout status ${r.registered.model} ${r.registered.version})`,
    );
  console.log(`ONNX:      ${r.exported.onnxUri} (max |diff| vs PyTorch ${r.exported.maxAbsDiff.toExponential(2)})`);
  console.log(`MLflow:    ${r.registered.modelUrl}`);
  console.log(`           ${r.registered.runUrl}`);
}

function reusedStep(r: ContinuousTrainingResult, step: string): boolean {
  const outputs: Record<string, { reused: boolean } | undefined> = {
    etl: r.dataset,
    validate: r.validation,
    train: r.training,
    evaluate: r.evaluation,
    export: r.exported,
    quantize: r.quantization,
  };
  return outputs[step]?.reused === true;
}

const readJson = (file: string | undefined): object | undefined =>
  file === undefined ? undefined : (JSON.parse(fs.readFileSync(file, 'utf8')) as object);

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description('start a continuousTraining workflow on raw interaction logs')
    .requiredOption('--model <name>', 'registered model name, e.g. two-tower-ml-100k')
    .requiredOption('--dataset <name>', 'dataset name, e.g. ml-100k')
    .option('--source <path...>', 'raw log files read with --format: local paths (uploaded) or s3:// URIs', [])
    .option('--format <format>', `raw format of the --source files: ${RAW_FORMATS.join(', ')}`, 'csv')
    .option(
      '--source-spec <json...>',
      'a source with its own reading, as JSON (repeatable): ' +
        '\'{"uri":"s3://recsys/serving-logs/feedback/...jsonl","format":"recsys-feedback","rating":5}\'; uri may be a ' +
        'local path (uploaded); options: columns and timestampUnit (default: those of --etl), and for recsys-feedback ' +
        '(the serving feedback log: user_id, item_id, event_time_ms in ms) events (default ["FEEDBACK_EVENT_CLICK"]; ' +
        'other events are skipped and counted) and rating (a fixed rating for its interactions; none by default)',
      [],
    )
    .option(
      '--etl <json>',
      'extra ETL config as JSON (columns, ratingRange, split, ...); a `rating` column is read without a mapping ' +
        '(`{"columns":{"rating":null}}` ignores it); .gz sources are decompressed',
      '{}',
    )
    .option('--epochs <n>', 'training epochs', (v) => Number(v))
    .option('--set <key=value...>', 'training config overrides', [])
    .option('--nproc <n>', 'torchrun processes per node (default 2 on this machine, 1 per node on a cluster)', (v) =>
      Number(v),
    )
    .option(
      '--target <target>',
      'where to train: local (this worker), local-cluster (network namespaces on this machine), chameleon (GPU ' +
        'nodes under a Blazar lease; see terraform/README.md)',
      'local',
    )
    .option('--nodes <n>', 'nodes of a cluster target (torchrun --nnodes)', (v) => Number(v), 2)
    .option(
      '--max-lease-hours <h>',
      'a cluster lease ends after this long, whatever happens (caps the cost)',
      (v) => Number(v),
      4,
    )
    .option(
      '--chameleon <json>',
      'Chameleon settings as JSON: {"siteKind":"baremetal|kvm","nodeType":"gpu_rtx_6000","cloud":"<clouds.yaml ' +
        'cloud>","keyPair":"<nova key pair>"}',
    )
    .option('--trigger <kind>', 'manual | schedule | drift', 'manual')
    .option('--id <workflowId>', 'workflow id (default: train-<model>-<dataset>-<time>)')
    .option('--force', 'train again even if these inputs were trained before (no step reuse)', false)
    .option('--gates <file>', 'promotion gate config JSON (lib/gates/config.ts)')
    .option('--validation <file>', 'data validation config JSON (lib/dataset/validation-config.ts)')
    .option('--rollout-config <file>', 'rollout config JSON for the rollout started when the gates pass')
    .option('--no-rollout', 'do not start a rollout when the gates pass')
    .option('--wait', 'follow progress and print the results', false)
    .action(
      async (opts: {
        model: string;
        dataset: string;
        source: string[];
        sourceSpec: string[];
        format: string;
        etl: string;
        epochs?: number;
        set: string[];
        nproc?: number;
        target: string;
        nodes: number;
        maxLeaseHours: number;
        chameleon?: string;
        trigger: 'manual' | 'schedule' | 'drift';
        id?: string;
        wait: boolean;
        force: boolean;
        gates?: string;
        validation?: string;
        rolloutConfig?: string;
        rollout: boolean;
      }) => {
        // Bad gate files fail here, naming the file and field, before anything runs.
        if (opts.gates) parseGateConfig(readJson(opts.gates), opts.gates);
        const etl = { format: opts.format, ...(JSON.parse(opts.etl) as object) } as NonNullable<
          ContinuousTrainingInput['dataset']
        >['etl'];
        if (opts.source.length === 0 && opts.sourceSpec.length === 0)
          throw new Error('give the raw logs with --source (and --format) or --source-spec');
        const cluster =
          opts.target === 'local'
            ? undefined
            : parseClusterSpec(
                {
                  target: opts.target,
                  nodes: opts.nodes,
                  maxLeaseHours: opts.maxLeaseHours,
                  ...(opts.chameleon ? { chameleon: JSON.parse(opts.chameleon) as unknown } : {}),
                },
                '--target/--nodes/--max-lease-hours/--chameleon',
              );
        const sources = await stageSpecs(opts.dataset, sourcesFromArgs(opts.source, opts.sourceSpec, etl));
        const trainCfg = parseOverrides(opts.set);
        if (opts.epochs !== undefined) trainCfg.epochs = opts.epochs;
        const input: ContinuousTrainingInput = {
          model: opts.model,
          dataset: {
            name: opts.dataset,
            sources,
            etl,
          },
          train: trainCfg,
          nprocPerNode: opts.nproc ?? (cluster ? 1 : 2),
          ...(cluster ? { cluster } : {}),
          trigger: opts.trigger,
          force: opts.force,
          gates: readJson(opts.gates),
          validation: readJson(opts.validation),
          autoRollout: opts.rollout,
          rollout: readJson(opts.rolloutConfig),
        };
        const client = await temporalClient();
        const workflowId = opts.id ?? trainingWorkflowId(opts.model, opts.dataset, new Date());
        const handle = await client.workflow.start(continuousTraining, {
          taskQueue: config().taskQueue,
          workflowId,
          args: [input],
          typedSearchAttributes: [
            { key: RecsysModel, value: opts.model },
            { key: RecsysTrigger, value: opts.trigger },
          ],
          staticSummary: `Continuous training of ${opts.model} on ${opts.dataset}`,
        });
        console.log(`Started continuousTraining ${workflowId}`);
        console.log(`Web UI: ${webUiUrl(workflowId, handle.firstExecutionRunId)}`);
        if (!opts.wait) return;

        let last = '';
        const poll = setInterval(() => {
          void (async () => {
            try {
              const p = await handle.query(progressQuery);
              const acts = await pendingActivities(handle);
              const act = acts[0];
              const line = act
                ? `[${p.currentStep}] ${describeHeartbeat(act.type, act.heartbeat)}${act.attempt > 1 ? ` (attempt ${act.attempt})` : ''}`
                : `[${p.currentStep}]`;
              if (line !== last) console.log(line);
              last = line;
            } catch {
              // the workflow may be between tasks; try again next tick
            }
          })();
        }, 1000);
        try {
          printResult(await handle.result());
        } catch (err) {
          if (err instanceof WorkflowFailedError) {
            // The useful message is at the root of the chain (workflow → activity → application failure).
            let root: Error = err;
            while (root.cause instanceof Error) root = root.cause;
            console.error(`\ncontinuousTraining failed: ${root.message}`);
            process.exitCode = 1;
          } else throw err;
        } finally {
          clearInterval(poll);
        }
        console.log(`Web UI:    ${webUiUrl(workflowId, handle.firstExecutionRunId)}`);
      },
    );
}
