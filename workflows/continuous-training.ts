/**
 * continuousTraining: raw interaction logs → validated dataset version (checked against the previous one) →
 * distributed training → offline evaluation with slices and confidence intervals against popularity and the current
 * champion → ONNX export → int8 quantization (gated) → promotion gates → MLflow registration (`challenger`) → a
 * `rollout` workflow, started as an abandoned child: only an approved rollout moves `champion`.
 * Deterministic: every side effect is an activity, data moves by URI.
 *
 * Every step's output is content-addressed, so re-running with the same dataset version and config reuses finished
 * steps (marked `reused`); `force` trains afresh. A model that fails the gates is not an error: it stays registered
 * as `challenger`, the version tags say which gate failed, and the workflow completes with outcome `rejected`.
 *
 * Progress is visible in the Web UI three ways: the `progress` query (steps and their status), the workflow's
 * current details (a table of the steps), and the heartbeat details of the running activity (epoch, loss, checkpoint).
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ApplicationFailure,
  executeChild,
  ParentClosePolicy,
  patched,
  proxyActivities,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type {
  ExportResult,
  QuantizationResult,
  RetrainPlan,
  ServingArtifact,
  TrainingRecipe,
} from '../activities/contracts';
import { familyOf } from '../lib/model-family';
import { checkModelName, ModelNameError } from '../lib/model-name';
import type { RolloutConfigInput } from '../lib/rollout/config';
import {
  RecsysDatasetVersion,
  RecsysModel,
  RecsysModelVersion,
  RecsysStage,
  RecsysTrigger,
} from '../lib/search-attributes';
import {
  etlOptions,
  evaluateOptions,
  exportOptions,
  gateOptions,
  planOptions,
  quantizeOptions,
  registerOptions,
  registryOptions,
  trainOptions,
  validationOptions,
} from './activity-options';
import { provisionWorkflowId } from './provision-api';
import { provisionTraining } from './provision-training';
import { rolloutWorkflowId } from './rollout-api';
import { rollout } from './rollout';
import type { ContinuousTrainingInput, ContinuousTrainingResult, TrainingOutcome } from './training-api';
import { TrainingSteps } from './training-progress';

/** Cascades are quantized per stage since this patch (before it, their quantize step was skipped). */
const CASCADE_QUANTIZATION_PATCH = 'cascade-stage-quantization';

const { etl } = proxyActivities<Activities>(etlOptions);
const { validateDataset } = proxyActivities<Activities>(validationOptions);
const { train } = proxyActivities<Activities>(trainOptions);
const { evaluate } = proxyActivities<Activities>(evaluateOptions);
const { exportOnnx } = proxyActivities<Activities>(exportOptions);
const { quantize } = proxyActivities<Activities>(quantizeOptions);
const { checkGates } = proxyActivities<Activities>(gateOptions);
const { register } = proxyActivities<Activities>(registerOptions);
const { currentChampion, recordRecipe } = proxyActivities<Activities>(registryOptions);
const { planRetrain } = proxyActivities<Activities>(planOptions);

export async function continuousTraining(input: ContinuousTrainingInput): Promise<ContinuousTrainingResult> {
  configChecked(() => checkModelName(input.model));
  const info = workflowInfo();
  const steps = new TrainingSteps();
  const { progress } = steps;
  const trigger = input.trigger ?? 'manual';
  upsertSearchAttributes([
    { key: RecsysModel, value: input.model },
    { key: RecsysTrigger, value: trigger },
    { key: RecsysStage, value: 'training' },
  ]);

  // The recipe: given by the caller, or planned from the champion's with the served feedback appended (a retrain).
  let plan: RetrainPlan | undefined;
  let recipe: TrainingRecipe;
  if (input.dataset) {
    recipe = recipeOf(input, input.dataset);
    steps.skip('plan', `data given: ${input.dataset.sources.length} source(s) of ${input.dataset.name}`);
  } else {
    plan = await steps.run(
      'plan',
      () => planRetrain({ model: input.model, overrides: input.retrain }),
      (p) =>
        `from champion v${p.basedOn.championVersion} (${p.recipe.dataset.name}@${p.basedOn.datasetVersion}) + ` +
        (p.feedback.rows > 0 ? `${p.feedback.rows} served feedback interactions` : 'no new served feedback') +
        (input.cause?.summary ? `; cause: ${input.cause.summary}` : ''),
    );
    recipe = plan.recipe;
  }
  const recipeUri = await recordRecipe({
    model: input.model,
    workflowId: info.workflowId,
    workflowRunId: info.runId,
    recipe,
  });

  const dataset = await steps.run(
    'etl',
    () => etl({ name: recipe.dataset.name, sources: recipe.dataset.sources, config: recipe.dataset.etl }),
    (d) =>
      `${d.name}@${d.version}: ${d.counts.interactions} interactions, ${d.counts.users} users, ${d.counts.items} items`,
  );
  progress.datasetVersion = dataset.version;
  upsertSearchAttributes([{ key: RecsysDatasetVersion, value: dataset.version }]);

  const validation = await steps.run(
    'validate',
    () => validateDataset({ dataset, config: recipe.validation }),
    (v) => v.summary,
  );
  if (validation.status === 'fail') {
    steps.fail('validate');
    // Not retryable: the data, not the infrastructure, is wrong. The report names every anomaly.
    throw ApplicationFailure.create({
      type: 'DataValidationError',
      message: `dataset ${dataset.name}@${dataset.version} failed validation: ${validation.summary} (report: ${validation.reportUri})`,
      nonRetryable: true,
      details: [{ reportUri: validation.reportUri, anomalies: validation.anomalies }],
    });
  }

  const trainConfig = recipe.train ?? {};
  const trainInput = {
    model: input.model,
    dataset,
    config: trainConfig,
    nprocPerNode: recipe.nprocPerNode ?? (input.cluster ? 1 : 2),
    rerun: input.force ? info.workflowId : undefined,
  };
  const training = await steps.run(
    'train',
    async () =>
      input.cluster
        ? (
            await executeChild(provisionTraining, {
              workflowId: provisionWorkflowId(info.workflowId),
              args: [{ train: trainInput, cluster: input.cluster }],
              // A terminated parent still gets its nodes released: the child is asked to cancel, and its saga runs.
              parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
            })
          ).training
        : train(trainInput),
    (t) =>
      `${familyOf(t.config)}: ${t.epochs} epochs on ${t.worldSize} process(es), ` +
      `loss ${t.finalLoss.toFixed(4)}, ${Math.round(t.samplesPerSec)} samples/s` +
      (t.resumedFromEpoch ? `, resumed from epoch ${t.resumedFromEpoch}` : ''),
  );

  const champion = await currentChampion({ model: input.model });
  const evaluation = await steps.run(
    'evaluate',
    () =>
      evaluate({
        dataset,
        training,
        k: 10,
        baseline: champion && {
          modelVersion: champion.version,
          modelUri: champion.modelUri,
          dataset: champion.dataset,
        },
      }),
    (e) =>
      `NDCG@10 ${fmt(e.model['ndcg@10'])} vs popularity ${fmt(e.popularity['ndcg@10'])}` +
      (champion ? ` and champion v${champion.version}` : '') +
      `; Recall@10 ${fmt(e.model['recall@10'])} (${e.nUsers} users)`,
  );

  const exported = await steps.run(
    'export',
    () => exportOnnx({ training, topK: recipe.topK ?? 100 }),
    (x) => `ONNX top-${x.topK}, max |Δ| vs PyTorch ${x.maxAbsDiff.toExponential(2)} (tolerance ${x.tolerance})`,
  );

  // A cascade is quantized stage by stage; its int8 artefact is the manifest of the chosen graphs. Runs started
  // before that (histories without the patch marker) skipped the step for a cascade, and replay must too.
  let quantization: QuantizationResult | undefined;
  if (exported.kind === 'cascade' && !patched(CASCADE_QUANTIZATION_PATCH))
    steps.skip('quantize', 'cascade: its stage graphs ship in fp32');
  else
    quantization = await steps.run(
      'quantize',
      () => quantize({ dataset, training, exported, tolerance: recipe.gates?.quantization?.ndcgTolerance }),
      (q) => `ships ${q.ships}: ${q.reason}`,
    );

  const gates = await steps.run(
    'gates',
    () => checkGates({ evaluation, config: recipe.gates, championVersion: champion?.version }),
    (g) => g.summary,
  );

  const registered = await steps.run(
    'register',
    () =>
      register({
        model: input.model,
        workflowId: info.workflowId,
        workflowRunId: info.runId,
        trigger,
        dataset,
        trainConfig,
        training,
        evaluation,
        exported,
        serving: servingArtifact(exported, quantization),
        quantization: quantizationTags(quantization),
        gates,
        recipeUri,
        cause: input.cause && { driftReportUri: input.cause.driftReportUri, requestedBy: input.cause.requestedBy },
      }),
    (r) => `${r.model} v${r.version} [${r.aliases.join(', ')}]`,
  );
  progress.modelVersion = registered.version;
  upsertSearchAttributes([{ key: RecsysModelVersion, value: registered.version }]);

  let started: ContinuousTrainingResult['rollout'];
  let outcome: TrainingOutcome = 'rejected';
  if (!gates.passed) {
    steps.skip('rollout', `kept as challenger: ${gates.summary}`);
  } else if (recipe.autoRollout === false) {
    outcome = 'passed';
    steps.skip(
      'rollout',
      `passed the gates; no rollout asked for (recsys rollout start ${input.model} ${registered.version})`,
    );
  } else {
    outcome = 'rollout-started';
    started = await steps.run(
      'rollout',
      () => startRollout(input.model, registered.version, recipe.rollout, info.workflowId, trigger),
      (r) =>
        r.alreadyStarted
          ? `rollout ${r.workflowId} already running`
          : `started ${r.workflowId} (staging → canary → approval)`,
    );
  }
  progress.currentStep = 'done';
  progress.outcome = outcome;
  upsertSearchAttributes([{ key: RecsysStage, value: gates.passed ? 'passed-gates' : 'rejected' }]);
  steps.show();
  return {
    outcome,
    plan,
    dataset,
    validation,
    training,
    evaluation,
    exported,
    quantization,
    gates,
    registered,
    rollout: started,
    stepSeconds: steps.seconds,
  };
}

/** Bad input the workflow can see for itself fails it at once, naming what is wrong (not retryable). */
function configChecked(check: () => unknown): void {
  try {
    check();
  } catch (err) {
    if (err instanceof ModelNameError) throw ApplicationFailure.nonRetryable(err.message, 'ConfigError');
    throw err;
  }
}

/** The recipe of a run that names its data: everything it was asked to do except who asked. */
function recipeOf(input: ContinuousTrainingInput, dataset: TrainingRecipe['dataset']): TrainingRecipe {
  const { train, nprocPerNode, topK, validation, gates, autoRollout, rollout: rolloutConfig } = input;
  return { dataset, train, nprocPerNode, topK, validation, gates, autoRollout, rollout: rolloutConfig };
}

/** Starts the rollout as a child that outlives this workflow; a rollout of this version already running is fine. */
async function startRollout(
  model: string,
  version: string,
  config: RolloutConfigInput | undefined,
  parent: string,
  trigger: string,
): Promise<{ workflowId: string; alreadyStarted: boolean }> {
  const workflowId = rolloutWorkflowId(model, version);
  try {
    await startChild(rollout, {
      workflowId,
      args: [{ model, version, config, startedBy: `continuousTraining ${parent}` }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `Rollout of ${model} v${version}`,
      // Searchable with the training that started it: RecsysTrigger="drift" finds both.
      typedSearchAttributes:
        trigger === 'manual'
          ? [{ key: RecsysModel, value: model }]
          : [
              { key: RecsysModel, value: model },
              { key: RecsysTrigger, value: trigger },
            ],
    });
    return { workflowId, alreadyStarted: false };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, alreadyStarted: true };
    throw err;
  }
}

/** The artefact serving loads: int8 when quantization passed its gate, else the float export. */
function servingArtifact(exported: ExportResult, q: QuantizationResult | undefined): ServingArtifact {
  return q?.ships === 'int8'
    ? { onnxUri: q.int8Uri, sha256: q.int8Sha256, precision: 'int8' }
    : { onnxUri: exported.onnxUri, sha256: exported.sha256, precision: 'fp32' };
}

function quantizationTags(q: QuantizationResult | undefined): Record<string, string | number> {
  if (!q) return { ships: 'float', reason: 'not quantized: a cascade ships its stages in fp32' };
  return {
    ships: q.ships,
    reason: q.reason,
    int8_uri: q.int8Uri,
    int8_sha256: q.int8Sha256,
    fp32_ndcg_at_10: q.float.ndcgAt10,
    int8_ndcg_at_10: q.int8.ndcgAt10,
    relative_ndcg_change: q.relativeNdcgChange,
    fp32_p50_ms: q.float.p50Ms,
    int8_p50_ms: q.int8.p50Ms,
    fp32_p99_ms: q.float.p99Ms,
    int8_p99_ms: q.int8.p99Ms,
    tolerance: q.tolerance,
    ...(q.p50Ratio !== undefined && {
      p50_ratio: q.p50Ratio,
      p50_ratio_lo: q.p50RatioLo!,
      p50_ratio_hi: q.p50RatioHi!,
    }),
    // A cascade's decision per stage (recsys.quantization.<stage>.<key>).
    ...Object.fromEntries(
      (q.stages ?? []).flatMap((s) =>
        Object.entries({
          ships: s.ships,
          reason: s.reason,
          p50_ratio: s.p50Ratio,
          p50_ratio_lo: s.p50RatioLo,
          p50_ratio_hi: s.p50RatioHi,
          fp32_p50_ms: s.floatP50Ms,
          int8_p50_ms: s.int8P50Ms,
          cascade_ndcg_at_10: s.ndcgAt10,
          relative_ndcg_change: s.relativeNdcgChange,
          int8_uri: s.int8Uri,
        }).map(([k, v]) => [`${s.name}.${k}`, v]),
      ),
    ),
  };
}

function fmt(v: number | undefined): string {
  return v === undefined ? 'n/a' : v.toFixed(4);
}
