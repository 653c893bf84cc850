/**
 * `recsys event` and `recsys recommend`'s pure parts: event types by their short names, the history source and the
 * store outcome in words, and `--http` with or without a URL.
 */
import { eventTypeOf, outcomeText } from '../../../cli/commands/event';
import { historySourceText, httpUrlOf } from '../../../cli/commands/recommend';

test('--type takes short names in any case, with - or _, and the full FeedbackEvent names', () => {
  expect(eventTypeOf('click')).toBe('FEEDBACK_EVENT_CLICK');
  expect(eventTypeOf('add-to-cart')).toBe('FEEDBACK_EVENT_ADD_TO_CART');
  expect(eventTypeOf('ADD_TO_CART')).toBe('FEEDBACK_EVENT_ADD_TO_CART');
  expect(eventTypeOf('FEEDBACK_EVENT_RATING')).toBe('FEEDBACK_EVENT_RATING');
  expect(() => eventTypeOf('like')).toThrow(
    '--type must be one of impression, click, add-to-cart, purchase, rating, dismiss, got "like"',
  );
  expect(() => eventTypeOf('unspecified')).toThrow('--type must be one of');
});

test('the outcome and the history source in words', () => {
  expect(outcomeText({ recorded_online: true, duplicate: false })).toBe('recorded in the online store');
  expect(outcomeText({ recorded_online: true, duplicate: true })).toMatch(/^duplicate: /);
  expect(outcomeText({ recorded_online: false, duplicate: false })).toMatch(/^not recorded in the online store/);
  expect(historySourceText({ history_source: 'HISTORY_SOURCE_ONLINE_STORE', online_store_degraded: false })).toBe(
    'online store',
  );
  expect(historySourceText({ history_source: 'HISTORY_SOURCE_DATASET', online_store_degraded: true })).toBe(
    'dataset (as of training); the online store did not answer in time',
  );
});

test('--http alone is the default URL; absent is gRPC', () => {
  expect(httpUrlOf(undefined)).toBeUndefined();
  expect(httpUrlOf(true)).toBe('http://127.0.0.1:8080');
  expect(httpUrlOf('http://127.0.0.1:8091')).toBe('http://127.0.0.1:8091');
});
