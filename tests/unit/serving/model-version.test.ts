import { ModelLoadError } from '../../../serving/errors';
import { formatModelRef, parseModelRef } from '../../../serving/model-ref';
import { servableFromTags } from '../../../serving/model-version';

describe('parseModelRef', () => {
  test.each([
    ['models:/two-tower@champion', { name: 'two-tower', alias: 'champion' }],
    ['models:/two-tower/3', { name: 'two-tower', version: '3' }],
    ['two-tower@challenger', { name: 'two-tower', alias: 'challenger' }],
    ['two-tower', { name: 'two-tower', alias: 'champion' }],
  ])('%s', (spec, ref) => {
    expect(parseModelRef(spec)).toEqual(ref);
    expect(parseModelRef(formatModelRef(parseModelRef(spec)))).toEqual(ref);
  });

  test('rejects what is not a reference', () => {
    expect(() => parseModelRef('models:/x/latest')).toThrow('not a model reference: "models:/x/latest"');
    expect(() => parseModelRef('')).toThrow('not a model reference');
  });
});

describe('servableFromTags', () => {
  const tags = {
    'recsys.onnx.uri': 's3://recsys/training/m/k/model-top100.onnx',
    'recsys.onnx.sha256': 'AB'.repeat(32),
    'recsys.onnx.top_k': '100',
    'recsys.onnx.history_len': '50',
    'recsys.dataset.name': 'ml-100k',
    'recsys.dataset.version': '73b2',
    'recsys.dataset.uri': 's3://recsys/datasets/ml-100k/73b2/',
  };

  test('reads the serving tags', () => {
    expect(servableFromTags('m', '4', tags)).toEqual({
      name: 'm',
      version: '4',
      aliases: [],
      kind: 'single',
      onnxUri: tags['recsys.onnx.uri'],
      onnxSha256: 'ab'.repeat(32),
      topK: 100,
      historyLen: 50,
      dataset: { name: 'ml-100k', version: '73b2', uri: 's3://recsys/datasets/ml-100k/73b2/' },
    });
  });

  test.each([
    ['recsys.onnx.uri', undefined, 'tag recsys.onnx.uri is missing: the version was not registered for serving'],
    ['recsys.onnx.uri', '/tmp/model.onnx', 'tag recsys.onnx.uri must be an s3:// URI (value: "/tmp/model.onnx")'],
    ['recsys.onnx.sha256', 'abc', 'tag recsys.onnx.sha256 must be a hex sha256 (value: "abc")'],
    ['recsys.onnx.top_k', '0', 'tag recsys.onnx.top_k must be a positive integer (value: "0")'],
    ['recsys.onnx.history_len', '2.5', 'tag recsys.onnx.history_len must be a positive integer (value: "2.5")'],
    ['recsys.dataset.version', undefined, 'tag recsys.dataset.version is missing'],
  ])('a bad %s is named in the error', (tag, value, message) => {
    const bad: Record<string, string> = { ...tags };
    if (value === undefined) delete bad[tag];
    else bad[tag] = value;
    const err = (() => {
      try {
        servableFromTags('m', '4', bad);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).stage).toBe('resolve');
    expect((err as ModelLoadError).message).toContain(`cannot load models:/m/4: resolve: ${message}`);
  });
});
