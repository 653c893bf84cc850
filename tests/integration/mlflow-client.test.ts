import { MlflowClient, MlflowError, tagsOf } from '../../lib/mlflow/client';
import { uniqueName } from './stack';

const mlflow = new MlflowClient();

test('experiments are created once and found again', async () => {
  const name = uniqueName('it-exp');
  const id = await mlflow.ensureExperiment(name);
  expect(await mlflow.ensureExperiment(name)).toBe(id);
});

test('a run logs params, metrics and a proxied artefact, and can be found by tag', async () => {
  const exp = await mlflow.ensureExperiment(uniqueName('it-exp'));
  const run = await mlflow.createRun(exp, 'it-run', { 'recsys.training_key': 'abc123' });
  expect(run.info.artifact_uri).toMatch(/^mlflow-artifacts:\//);
  await mlflow.logBatch(run.info.run_id, { metrics: { ndcg_at_10: 0.25 }, params: { epochs: '3' } });
  await mlflow.uploadArtifact(run, 'reports/summary.json', JSON.stringify({ ok: true }));
  await mlflow.finishRun(run.info.run_id);

  const fetched = await mlflow.getRun(run.info.run_id);
  expect(fetched.info.status).toBe('FINISHED');
  expect(fetched.data?.metrics).toEqual([expect.objectContaining({ key: 'ndcg_at_10', value: 0.25 })]);
  expect(fetched.data?.params).toEqual([{ key: 'epochs', value: '3' }]);
  const found = await mlflow.searchRuns([exp], "tags.`recsys.training_key` = 'abc123'");
  expect(found.map((r) => r.info.run_id)).toEqual([run.info.run_id]);

  const root = run.info.artifact_uri.replace('mlflow-artifacts:/', '');
  const res = await fetch(`${mlflow.baseUrl}/api/2.0/mlflow-artifacts/artifacts/${root}/reports/summary.json`);
  expect(await res.json()).toEqual({ ok: true });
});

test('registered model versions carry tags and move between aliases', async () => {
  const name = uniqueName('it-model');
  const exp = await mlflow.ensureExperiment(name);
  const run = await mlflow.createRun(exp, 'r');
  await mlflow.ensureRegisteredModel(name);
  await mlflow.ensureRegisteredModel(name); // idempotent
  const v1 = await mlflow.createModelVersion(name, `${run.info.artifact_uri}/model`, run.info.run_id, {
    'recsys.dataset.version': 'd1',
  });
  const v2 = await mlflow.createModelVersion(name, `${run.info.artifact_uri}/model`, run.info.run_id);
  expect([v1.version, v2.version]).toEqual(['1', '2']);

  await mlflow.setModelVersionTag(name, v2.version, 'recsys.gate', 'passed');
  await mlflow.setAlias(name, 'champion', v1.version);
  await mlflow.setAlias(name, 'challenger', v2.version);
  expect((await mlflow.getVersionByAlias(name, 'champion'))?.version).toBe('1');
  expect(tagsOf((await mlflow.getVersionByAlias(name, 'champion'))!)).toEqual({ 'recsys.dataset.version': 'd1' });

  await mlflow.setAlias(name, 'champion', v2.version);
  const v2now = await mlflow.getModelVersion(name, v2.version);
  expect(v2now.aliases?.sort()).toEqual(['challenger', 'champion']);
  expect(tagsOf(v2now)).toEqual({ 'recsys.gate': 'passed' });

  await mlflow.deleteAlias(name, 'challenger');
  expect(await mlflow.getVersionByAlias(name, 'challenger')).toBeUndefined();
  const versions = await mlflow.searchModelVersions(`name = '${name}'`);
  expect(versions.map((v) => v.version).sort()).toEqual(['1', '2']);
});

test('errors carry the MLflow error code', async () => {
  const err = await mlflow.getRegisteredModel(uniqueName('missing')).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MlflowError);
  expect((err as MlflowError).notFound).toBe(true);
});
