/** The online store's key layout and list entry encoding (serving/feature-layout.ts). */
import { checkNamespace, decodeEntry, encodeEntry, featureKeys } from '../../../serving/feature-layout';

describe('key layout', () => {
  it('namespaces every key by the dataset name inside a hash tag', () => {
    expect(featureKeys.history('ml-100k', 'u1')).toBe('recsys:{ml-100k}:h:u1');
    expect(featureKeys.other('ml-100k', 'u1')).toBe('recsys:{ml-100k}:x:u1');
    expect(featureKeys.seen('ml-100k', 'c:abc')).toBe('recsys:{ml-100k}:e:c:abc');
    expect(featureKeys.popularity('ml-100k', 498925)).toBe('recsys:{ml-100k}:p:498925');
    expect(featureKeys.popularityUnion('ml-100k')).toBe('recsys:{ml-100k}:p:union');
    expect(featureKeys.pattern('ml-100k')).toBe('recsys:{ml-100k}:*');
  });

  it('keeps two catalogues apart and every key of one catalogue in one cluster slot', () => {
    const tag = (key: string) => /\{([^}]*)\}/.exec(key)![1];
    const keys = [
      featureKeys.history('books', 'u:1'),
      featureKeys.other('books', 'u}1'),
      featureKeys.seen('books', 'r:x|y'),
      featureKeys.popularity('books', 1),
      featureKeys.popularityUnion('books'),
    ];
    expect(new Set(keys.map(tag))).toEqual(new Set(['books']));
    expect(featureKeys.history('books', 'u1')).not.toBe(featureKeys.history('movies', 'u1'));
  });

  it('refuses a namespace that is not a dataset name, naming it', () => {
    expect(() => featureKeys.history('a}b', 'u1')).toThrow(/namespace "a}b" must be a dataset name/);
    expect(() => checkNamespace('')).toThrow(/namespace ""/);
    expect(checkNamespace('ml-1m.v2')).toBe('ml-1m.v2');
  });
});

describe('list entries', () => {
  const entry = {
    timeMs: 1_700_000_000_123,
    event: 'FEEDBACK_EVENT_CLICK',
    value: 0,
    itemId: 'i|1"x',
    eventId: 'c:e1',
  };

  it('start with the time as digits (what the Lua script reads) and round-trip', () => {
    const raw = encodeEntry(entry);
    expect(raw).toMatch(/^\[1700000000123,/);
    expect(decodeEntry(raw)).toEqual(entry);
  });

  it('are equal exactly when they record the same event', () => {
    expect(encodeEntry(entry)).toBe(encodeEntry({ ...entry }));
    expect(encodeEntry(entry)).not.toBe(encodeEntry({ ...entry, eventId: 'c:e2' }));
  });

  it('decode to undefined, not an exception, when they are not entries', () => {
    for (const raw of ['', 'not json', '{}', '[1,2,3]', '["1","e",0,"i","id"]', '[1,"e",0,2,"id"]'])
      expect(decodeEntry(raw)).toBeUndefined();
  });
});
