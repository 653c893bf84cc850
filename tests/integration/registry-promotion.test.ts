/**
 * Promotion and its undo against the real MLflow registry: promote moves `champion` and retires the old champion;
 * restoreChampion puts the alias back and leaves no `recsys.retired` on the champion it restores.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { MlflowClient, tagsOf } from '../../lib/mlflow/client';
import { TAGS } from '../../lib/mlflow/tags';
import { uniqueName } from './stack';

const mlflow = new MlflowClient();
const { promote, restoreChampion } = createActivities();
const act = <I, O>(fn: (input: I) => Promise<O>, input: I) => new MockActivityEnvironment().run(fn, input);

test('a restored champion is champion again and no longer retired', async () => {
  const model = uniqueName('it-promotion');
  await mlflow.ensureRegisteredModel(model);
  const exp = await mlflow.ensureExperiment(model);
  const run = await mlflow.createRun(exp, 'it-run');
  const v1 = (await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, {})).version;
  const v2 = (await mlflow.createModelVersion(model, `${run.info.artifact_uri}/model`, run.info.run_id, {})).version;
  await act(promote, { model, version: v1, reason: 'first', by: 'jest' });
  await act(promote, { model, version: v2, reason: 'second', by: 'jest', expectedChampion: v1 });
  expect((await mlflow.getVersionByAlias(model, 'champion'))?.version).toBe(v2);
  expect(tagsOf(await mlflow.getModelVersion(model, v1))[TAGS.retired]).toMatch(`replaced by v${v2}`);

  expect(await act(restoreChampion, { model, version: v2, previousChampion: v1 })).toEqual({ restored: true });
  expect((await mlflow.getVersionByAlias(model, 'champion'))?.version).toBe(v1);
  expect(tagsOf(await mlflow.getModelVersion(model, v1))[TAGS.retired]).toBeUndefined();
  expect(tagsOf(await mlflow.getModelVersion(model, v2))[TAGS.promoted]).toMatch(/^reverted /);
  // Idempotent: the alias no longer points at v2, so a retried undo changes nothing.
  expect(await act(restoreChampion, { model, version: v2, previousChampion: v1 })).toEqual({ restored: false });
});
