import type { FeedbackRequest, RecommendRequest } from '../../../serving/proto';
import { DEFAULT_LIMITS, feedbackProblem, recommendProblem, type RequestLimits } from '../../../serving/validate';

const limits: RequestLimits = { topK: 100, maxHistory: 5, maxExcludes: 3, maxIdLength: 8 };
const ok: RecommendRequest = {
  user_id: 'u1',
  history: [{ item_id: 'i1', timestamp_ms: 1 }],
  k: 10,
  exclude_item_ids: ['i2'],
};
const items = (n: number) => Array.from({ length: n }, (_, i) => ({ item_id: `i${i}`, timestamp_ms: i }));

describe('recommendProblem', () => {
  test('a valid request has no problem, at both ends of every limit', () => {
    expect(recommendProblem(ok, limits)).toBeUndefined();
    expect(recommendProblem({ ...ok, k: 1, history: [], exclude_item_ids: [] }, limits)).toBeUndefined();
    expect(
      recommendProblem({ ...ok, k: 100, history: items(5), exclude_item_ids: ['a', 'b', 'c'] }, limits),
    ).toBeUndefined();
  });

  test.each<[string, Partial<RecommendRequest>, string]>([
    ['missing user_id', { user_id: '' }, 'user_id is required'],
    ['user_id too long', { user_id: 'u'.repeat(9) }, 'user_id is 9 characters long; the limit is 8'],
    ['k = 0 (unset)', { k: 0 }, "k must be between 1 and 100 (the model's top_k), got 0"],
    ['negative k', { k: -3 }, "k must be between 1 and 100 (the model's top_k), got -3"],
    ['k above top_k', { k: 101 }, "k must be between 1 and 100 (the model's top_k), got 101"],
    ['history too long', { history: items(6) }, 'history has 6 items; the limit is 5'],
    [
      'history item without id',
      { history: [...items(2), { item_id: '', timestamp_ms: 0 }] },
      'history[2].item_id is required',
    ],
    ['too many excludes', { exclude_item_ids: ['a', 'b', 'c', 'd'] }, 'exclude_item_ids has 4 items; the limit is 3'],
  ])('%s', (_, change, message) => {
    expect(recommendProblem({ ...ok, ...change }, limits)).toBe(message);
  });
});

describe('feedbackProblem', () => {
  const fb: FeedbackRequest = {
    request_id: 'r1',
    user_id: 'u1',
    item_id: 'i1',
    event: 'FEEDBACK_EVENT_CLICK',
    timestamp_ms: 0,
    value: 0,
    event_id: '',
  };

  test('a valid event has no problem; request_id is optional', () => {
    expect(feedbackProblem(fb, DEFAULT_LIMITS)).toBeUndefined();
    expect(feedbackProblem({ ...fb, request_id: '' }, DEFAULT_LIMITS)).toBeUndefined();
  });

  test.each<[string, Partial<FeedbackRequest>, RegExp]>([
    ['missing user_id', { user_id: '' }, /^user_id is required$/],
    ['missing item_id', { item_id: '' }, /^item_id is required$/],
    [
      'unspecified event',
      { event: 'FEEDBACK_EVENT_UNSPECIFIED' },
      /^event must be one of .*CLICK.*got FEEDBACK_EVENT_UNSPECIFIED$/,
    ],
    ['request_id too long', { request_id: 'r'.repeat(300) }, /^request_id is 300 characters long; the limit is 256$/],
  ])('%s', (_, change, message) => {
    expect(feedbackProblem({ ...fb, ...change }, DEFAULT_LIMITS)).toMatch(message);
  });
});
