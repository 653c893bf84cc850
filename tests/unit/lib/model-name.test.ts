/** Model names become object-store key segments: anything that could leave its prefix is refused, naming it. */
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { trainingActivities } from '../../../activities/training';
import { defaultDeps } from '../../../activities/deps';
import { checkModelName } from '../../../lib/model-name';
import type { ObjectStore } from '../../../lib/object-store';

it('accepts registry-style names and refuses path-like ones', () => {
  for (const ok of ['two-tower-ml-100k', 'seq_ml.1m', 'A1']) expect(checkModelName(ok)).toBe(ok);
  for (const bad of ['../x', 'a/b', '', '.hidden', 'a..b', 'x y'])
    expect(() => checkModelName(bad)).toThrow(`model name ${JSON.stringify(bad)} must match`);
});

it('train refuses a model name that would leave its key prefix, before touching the store', async () => {
  const touched: string[] = [];
  const store = new Proxy({} as ObjectStore, {
    get: (_t, name) => () => {
      touched.push(String(name));
      return Promise.resolve(undefined);
    },
  });
  const { train } = trainingActivities(defaultDeps({ store }));
  const dataset = {
    name: 'd',
    version: 'v',
    uri: 's3://b/datasets/d/v/',
    manifestUri: '',
    counts: {} as never,
    reused: true,
  };
  const err = await new MockActivityEnvironment()
    .run(train, { model: '../../evil', dataset, config: {}, nprocPerNode: 1 })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect(err).toMatchObject({ type: 'ConfigError', nonRetryable: true });
  expect((err as Error).message).toMatch('model name "../../evil" must match');
  expect(touched).toEqual([]);
});
