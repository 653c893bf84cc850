/**
 * The HNSW manifest: a complete one parses; anything wrong fails naming where it came from, the field, why and the
 * value, so a bad manifest in the object store is diagnosed from the serving log alone.
 */
import { parseAnnManifest, type AnnManifest } from '../../../lib/ann-manifest';

const sha = (c: string) => c.repeat(64);
const good: AnnManifest = {
  kind: 'hnsw',
  dims: 64,
  nItems: 100_000,
  historyLen: 50,
  metric: 'ip',
  graph: 'angular',
  params: { connectivity: 16, expansionAdd: 128, expansionSearch: 64 },
  check: { k: 10, target: 0.99, recall: 0.995, queries: 1000 },
  user: { uri: 's3://b/t/ann-user-0123.onnx', sha256: sha('a'), bytes: 1234 },
  index: { uri: 's3://b/t/ann-hnsw-4567.usearch', sha256: sha('b'), bytes: 98765 },
};
const where = 's3://b/t/ann-89ab.json';
const parse = (m: unknown) => parseAnnManifest(JSON.stringify(m), where);

test('a complete manifest parses to itself', () => {
  expect(parse(good)).toEqual(good);
});

test('a manifest written before the angular graph (no `graph`) describes an inner-product graph', () => {
  const older = (({ graph: _, ...rest }) => rest)(good);
  expect(parse(older)).toEqual({ ...good, graph: 'ip' });
});

test.each([
  ['kind', { ...good, kind: 'ivf' }, /^s3:\/\/b\/t\/ann-89ab\.json: kind: .*\(value: "ivf"\)$/],
  ['metric', { ...good, metric: 'cos' }, /metric: .*\(value: "cos"\)$/],
  ['graph', { ...good, graph: 'l2' }, /graph: .*\(value: "l2"\)$/],
  ['dims', { ...good, dims: 0 }, /dims: .*\(value: 0\)$/],
  ['nItems', { ...good, nItems: 2.5 }, /nItems: .*\(value: 2\.5\)$/],
  ['params', { ...good, params: { ...good.params, connectivity: 1 } }, /params\.connectivity: .*\(value: 1\)$/],
  [
    'user.uri',
    { ...good, user: { ...good.user, uri: 'http://x/u.onnx' } },
    /user\.uri: .*\(value: "http:\/\/x\/u\.onnx"\)$/,
  ],
  [
    'index.sha256',
    { ...good, index: { ...good.index, sha256: 'ABC' } },
    /index\.sha256: must be a lowercase hex sha256 \(value: "ABC"\)$/,
  ],
  ['missing field', (({ historyLen: _, ...rest }) => rest)(good), /historyLen: .*\(value: undefined\)$/],
])('%s: the error names the field and value', (_, manifest, message) => {
  expect(() => parse(manifest)).toThrow(message);
});

test('an index whose check did not reach its target cannot be described as servable', () => {
  expect(() => parse({ ...good, check: { ...good.check, recall: 0.98 } })).toThrow(
    /check: recall is below the target: this index may not serve \(value: \{.*"recall":0\.98.*\}\)$/,
  );
});

test('text that is not JSON names the manifest', () => {
  expect(() => parseAnnManifest('{kind:', where)).toThrow(/^s3:\/\/b\/t\/ann-89ab\.json: not JSON/);
});
