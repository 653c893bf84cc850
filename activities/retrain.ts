/**
 * Retraining activities. `recordRecipe` keeps what a training was asked to do next to its outputs; `planRetrain`
 * builds the next training from the champion's recipe: the same data sources, with the production feedback served
 * since the champion's data appended as a `recsys-feedback` source, so content addressing yields a new dataset
 * version rather than reusing the old one. Both are idempotent: the recipe's key is the workflow's, the feedback
 * export's key is its time window.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { exportFeedback } from '../fleet/logs/feedback-export';
import { Manifest } from '../lib/dataset/manifest';
import { manifestUri, parseDatasetUri } from '../lib/dataset/ref';
import { checkModelName } from '../lib/model-name';
import { tagsOf } from '../lib/mlflow/client';
import { ALIASES, TAGS } from '../lib/mlflow/tags';
import { defaultLogPrefix } from '../serving/log-uploader';
import type { PlanRetrainInput, RecordRecipeInput, RetrainPlan, TrainingRecipe } from './contracts';
import type { ActivityDeps } from './deps';
import { activityHeartbeat } from './heartbeat';

/** Feedback younger than this may still sit in a replica's buffer or spill directory: the next retrain takes it. */
export const FEEDBACK_SETTLE_MS = 15_000;
const PRODUCTION = 'production';

export const recipeUriOf = (bucket: string, model: string, workflowId: string, runId: string): string =>
  `s3://${bucket}/training/${model}/recipes/${workflowId}/${runId}.json`;

/** The rating an implicit positive carries: the dataset's highest rating when it has ratings, else none. */
export function implicitRating(manifest: Manifest): number | undefined {
  const values = Object.keys(manifest.stats.ratingHistogram)
    .map(Number)
    .filter((v) => Number.isFinite(v));
  return values.length > 0 ? Math.max(...values) : undefined;
}

async function planRetrain(deps: ActivityDeps, input: PlanRetrainInput): Promise<RetrainPlan> {
  const { mlflow, store, config } = deps;
  const model = checkModelName(input.model);
  const champion = await mlflow.getVersionByAlias(model, ALIASES.champion);
  if (!champion)
    throw ApplicationFailure.nonRetryable(
      `${model} has no champion to retrain from; train it once with recsys train`,
      'NoChampion',
    );
  const tags = tagsOf(champion);
  const recipeUri = tags[TAGS.trainingInputUri];
  const datasetUri = tags[TAGS.datasetUri];
  if (!recipeUri || !datasetUri)
    throw ApplicationFailure.nonRetryable(
      `${model} v${champion.version} (champion) has no ${!recipeUri ? TAGS.trainingInputUri : TAGS.datasetUri} tag: ` +
        'it was trained before recipes were recorded; train it once with recsys train, then retraining can follow it',
      'NoRecipe',
    );
  const recipe = (await store.getJson(recipeUri)) as TrainingRecipe | undefined;
  if (!recipe?.dataset?.sources)
    throw ApplicationFailure.nonRetryable(
      `recipe ${recipeUri} of ${model} v${champion.version} is missing`,
      'NoRecipe',
    );
  const manifest = Manifest.parse(await store.getJson(manifestUri(parseDatasetUri(datasetUri).uri)));

  const fromMs = recipe.feedbackUntilMs ?? Date.parse(manifest.createdAt);
  const toMs = Math.max(fromMs, Date.now() - FEEDBACK_SETTLE_MS);
  const env = input.feedbackEnv ?? PRODUCTION;
  activityHeartbeat({ step: 'export-feedback', model, env, from: new Date(fromMs).toISOString() });
  const exported = await exportFeedback({
    store,
    prefix: defaultLogPrefix(config.bucket),
    model,
    env,
    fromMs,
    toMs,
    outUri: `s3://${config.bucket}/feedback/${model}/${env}/${fromMs}-${toMs}.jsonl`,
  });
  const rating = implicitRating(manifest);
  const sources: TrainingRecipe['dataset']['sources'] = [
    ...recipe.dataset.sources,
    ...(exported.uri
      ? [{ uri: exported.uri, format: 'recsys-feedback' as const, ...(rating !== undefined ? { rating } : {}) }]
      : []),
  ];
  return {
    recipe: { ...recipe, ...input.overrides, dataset: { ...recipe.dataset, sources }, feedbackUntilMs: toMs },
    basedOn: { championVersion: champion.version, datasetVersion: manifest.version, recipeUri },
    feedback: { uri: exported.uri, rows: exported.rows, fromMs, toMs },
  };
}

export function retrainActivities(deps: ActivityDeps) {
  return {
    /** Stores what a training was asked to do (idempotent: one object per workflow run); returns its URI. */
    recordRecipe: async (input: RecordRecipeInput): Promise<string> => {
      const uri = recipeUriOf(deps.config.bucket, checkModelName(input.model), input.workflowId, input.workflowRunId);
      await deps.store.putJson(uri, input.recipe);
      return uri;
    },
    /** The next training of a model: the champion's recipe, its sources plus the production feedback served since. */
    planRetrain: (input: PlanRetrainInput): Promise<RetrainPlan> => planRetrain(deps, input),
  };
}
