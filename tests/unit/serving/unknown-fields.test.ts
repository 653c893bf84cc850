/**
 * Fields the contract does not define: the wire scan against the loaded descriptors, the mark the Recommender's
 * request deserializers leave, and the INVALID_ARGUMENT a caller gets over gRPC.
 */
import * as grpc from '@grpc/grpc-js';
import type { ModelPool } from '../../../serving/model-pool';
import { RECOMMENDER_SERVICE, packageDefinition, recsysV1, type RecommendRequest } from '../../../serving/proto';
import { RecommenderCore } from '../../../serving/recommender-core';
import { recommenderHandlers } from '../../../serving/service';
import {
  describeUnknownField,
  findUnknownField,
  messageFields,
  unknownFieldOf,
  type MessageFields,
} from '../../../serving/unknown-fields';
import { DEFAULT_LIMITS, feedbackProblem, recommendProblem } from '../../../serving/validate';

type Method = { requestSerialize(v: object): Buffer; requestDeserialize(b: Buffer): object };
const method = (name: 'Recommend' | 'Feedback') =>
  (packageDefinition()[RECOMMENDER_SERVICE] as unknown as Record<string, Method>)[name]!;

const varint = (n: number): number[] => {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
};
/** One encoded field: tag, then the value as the wire type wants it. */
const field = (number: number, wireType: number, value: number[] = []): number[] => {
  const tag = varint(number * 8 + wireType);
  if (wireType === 0) return [...tag, ...varint(value[0] ?? 0)];
  if (wireType === 2) return [...tag, ...varint(value.length), ...value];
  return [...tag, ...value];
};
const bytes = (...parts: number[][]) => Buffer.from(parts.flat());
const str = (s: string) => [...Buffer.from(s)];

const recommendRequest: RecommendRequest = {
  user_id: 'u1',
  history: [
    { item_id: 'a', timestamp_ms: 1_700_000_000_000 },
    { item_id: 'b', timestamp_ms: 2 },
  ],
  k: 10,
  exclude_item_ids: ['c', 'd'],
};
const encoded = method('Recommend').requestSerialize(recommendRequest);

describe('messageFields (from the loaded descriptors)', () => {
  test('knows RecommendRequest and the HistoryItem it embeds', () => {
    const m = messageFields(packageDefinition(), 'recsys.v1.RecommendRequest');
    expect([...m.fields.keys()]).toEqual([1, 2, 3, 4]);
    expect(m.fields.get(2)).toMatchObject({ name: 'history', message: { name: 'recsys.v1.HistoryItem' } });
    expect([...m.fields.get(2)!.message!.fields.keys()]).toEqual([1, 2]);
    expect(m.fields.get(1)!.message).toBeUndefined();
  });

  test('an unknown type is an error', () => {
    expect(() => messageFields(packageDefinition(), 'recsys.v1.Nope')).toThrow('no message type recsys.v1.Nope');
  });
});

describe('findUnknownField', () => {
  const recommend: MessageFields = messageFields(packageDefinition(), 'recsys.v1.RecommendRequest');
  const feedback: MessageFields = messageFields(packageDefinition(), 'recsys.v1.FeedbackRequest');

  test('a request with only known fields has none', () => {
    expect(findUnknownField(encoded, recommend)).toBeUndefined();
    expect(findUnknownField(Buffer.alloc(0), recommend)).toBeUndefined();
    const fb = method('Feedback').requestSerialize({
      request_id: 'r',
      user_id: 'u',
      item_id: 'i',
      event: 'FEEDBACK_EVENT_RATING',
      timestamp_ms: 5,
      value: 4.5,
    });
    expect(findUnknownField(fb, feedback)).toBeUndefined();
  });

  test.each<[string, number, number[]]>([
    ['varint', 9, field(9, 0, [300])],
    ['64-bit', 9, field(9, 1, [1, 2, 3, 4, 5, 6, 7, 8])],
    ['length-delimited', 9, field(9, 2, str('extra'))],
    ['32-bit', 9, field(9, 5, [1, 2, 3, 4])],
    ['largest-numbered', 536_870_911, field(536_870_911, 0, [1])],
  ])('an unknown %s field at the top level, before or after the known ones', (_, number, extra) => {
    const expected = { number, message: 'recsys.v1.RecommendRequest', path: '' };
    expect(findUnknownField(bytes([...encoded], extra), recommend)).toEqual(expected);
    expect(findUnknownField(bytes(extra, [...encoded]), recommend)).toEqual(expected);
  });

  test('an unknown field inside an embedded message names the message and where it is', () => {
    const item = (id: string, extra: number[] = []) => field(2, 2, [...field(1, 2, str(id)), ...extra]);
    const buf = bytes(field(1, 2, str('u1')), item('a'), field(3, 0, [10]), item('b', field(7, 0, [1])));
    const u = findUnknownField(buf, recommend);
    expect(u).toEqual({ number: 7, message: 'recsys.v1.HistoryItem', path: 'history[1]' });
    expect(describeUnknownField(u!)).toBe('unknown field 7 in recsys.v1.HistoryItem at history[1]');
    expect(describeUnknownField({ number: 9, message: 'recsys.v1.FeedbackRequest', path: '' })).toBe(
      'unknown field 9 in recsys.v1.FeedbackRequest',
    );
  });

  test('a message with sparse field numbers is looked up by number all the same', () => {
    const sparse: MessageFields = {
      name: 'x.Sparse',
      fields: new Map([[5000, { name: 'far', message: undefined }]]),
      byNumber: [],
    };
    expect(findUnknownField(bytes(field(5000, 0, [1])), sparse)).toBeUndefined();
    expect(findUnknownField(bytes(field(5000, 0, [1]), field(1, 0, [1])), sparse)).toEqual({
      number: 1,
      message: 'x.Sparse',
      path: '',
    });
  });

  test('field number 0 is not a field', () => {
    expect(findUnknownField(bytes(field(0, 0, [1])), recommend)).toMatchObject({ number: 0 });
  });

  test('bytes it cannot walk are left to the decoder', () => {
    expect(findUnknownField(encoded.subarray(0, encoded.length - 1), recommend)).toBeUndefined();
    expect(findUnknownField(bytes([0x80]), recommend)).toBeUndefined();
    expect(findUnknownField(bytes(field(1, 3)), recommend)).toBeUndefined();
  });
});

describe('the Recommender request deserializers', () => {
  test('mark a request carrying an unknown field; validation reports it first', () => {
    const limits = { ...DEFAULT_LIMITS, topK: 100 };
    const clean = method('Recommend').requestDeserialize(encoded) as RecommendRequest;
    expect(clean).toEqual(recommendRequest);
    expect(unknownFieldOf(clean)).toBeUndefined();
    expect(recommendProblem(clean, limits)).toBeUndefined();

    const marked = method('Recommend').requestDeserialize(bytes([...encoded], field(12, 0, [1]))) as RecommendRequest;
    expect(marked).toEqual(recommendRequest); // the mark is not a field
    expect(Object.keys(marked)).toEqual(Object.keys(clean));
    expect(recommendProblem(marked, limits)).toBe('unknown field 12 in recsys.v1.RecommendRequest');

    const fb = method('Feedback').requestDeserialize(bytes(field(2, 2, str('u')), field(40, 2, str('x'))));
    expect(feedbackProblem(fb as never, DEFAULT_LIMITS)).toBe('unknown field 40 in recsys.v1.FeedbackRequest');
  });

  test('over gRPC the caller gets INVALID_ARGUMENT naming the field (not INTERNAL)', async () => {
    const server = new grpc.Server();
    const pool = { active: undefined, pick: () => undefined } as unknown as ModelPool;
    server.addService(recsysV1().Recommender.service, recommenderHandlers(new RecommenderCore(pool)));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = (body: Buffer) =>
      new Promise<Buffer>((resolve, reject) =>
        raw.makeUnaryRequest(
          `/${RECOMMENDER_SERVICE}/Feedback`,
          (b: Buffer) => b,
          (b: Buffer) => b,
          body,
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      );
    const known = [...field(2, 2, str('u')), ...field(3, 2, str('i')), ...field(4, 0, [2])];
    try {
      await expect(call(bytes(known))).resolves.toBeDefined();
      await expect(call(bytes(known, field(99, 0, [1])))).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: 'unknown field 99 in recsys.v1.FeedbackRequest',
      });
    } finally {
      raw.close();
      server.forceShutdown();
    }
  });
});
