/**
 * Names read from the registry become paths and keys only after the checks of lib/dataset/ref.ts (issue 11, item 9).
 * servableFromTags lives in serving/, but what it guards is the dataset reference, so its poisoned-tag cases are here.
 */
import { checkDatasetFileName } from '../../../../lib/dataset/ref';
import { ModelLoadError } from '../../../../serving/errors';
import { servableFromTags } from '../../../../serving/model-version';

const tags = {
  'recsys.onnx.uri': 's3://recsys/training/m/k/model-top100.onnx',
  'recsys.onnx.sha256': 'ab'.repeat(32),
  'recsys.onnx.top_k': '100',
  'recsys.onnx.history_len': '50',
  'recsys.dataset.name': 'ml-100k',
  'recsys.dataset.version': '73b2',
  'recsys.dataset.uri': 's3://recsys/datasets/ml-100k/73b2/',
};

const refusal = (over: Record<string, string>) => {
  try {
    servableFromTags('m', '4', { ...tags, ...over });
  } catch (err) {
    return err as ModelLoadError;
  }
  throw new Error('expected the tags to be refused');
};

test.each([
  ['recsys.dataset.name', '../../etc', 'tag recsys.dataset.name is refused: dataset name "../../etc" must match'],
  ['recsys.dataset.version', '../v1', 'tag recsys.dataset.version is refused: dataset version "../v1" must match'],
  ['recsys.dataset.uri', 's3://recsys/datasets/../etc/', 'tag recsys.dataset.uri is refused: dataset name ".."'],
  ['recsys.dataset.uri', '/etc/passwd', 'tag recsys.dataset.uri is refused: a dataset URI looks like'],
])('a poisoned %s (%s) is refused, naming the tag', (tag, value, message) => {
  const err = refusal({ [tag]: value });
  expect(err).toBeInstanceOf(ModelLoadError);
  expect(err.stage).toBe('resolve');
  expect(err.message).toContain(`cannot load models:/m/4: resolve: ${message}`);
  expect(err.message).toContain(`(value: ${JSON.stringify(value)})`);
});

test('a dataset URI that names another dataset than the name and version tags is refused', () => {
  const err = refusal({ 'recsys.dataset.uri': 's3://recsys/datasets/other/73b2/' });
  expect(err.message).toContain('tag recsys.dataset.uri must be the URI of the tagged dataset ml-100k@73b2');
});

test('a manifest file name must be a plain file name', () => {
  expect(checkDatasetFileName('train.parquet')).toBe('train.parquet');
  for (const bad of ['../x', 'a/b', '/abs', '.hidden', '..', 'a..b', '', 'x\\y'])
    expect(() => checkDatasetFileName(bad)).toThrow(
      `dataset file name ${JSON.stringify(bad)} must be a plain file name`,
    );
});
