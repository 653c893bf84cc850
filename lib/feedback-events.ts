/**
 * The feedback events the serving tier accepts and logs (proto `recsys.v1.FeedbackEvent`, by name), listed once in
 * lib/ so that serving's request checks and the ETL's `recsys-feedback` reader share them.
 */
export const FEEDBACK_EVENTS = [
  'FEEDBACK_EVENT_IMPRESSION',
  'FEEDBACK_EVENT_CLICK',
  'FEEDBACK_EVENT_ADD_TO_CART',
  'FEEDBACK_EVENT_PURCHASE',
  'FEEDBACK_EVENT_RATING',
  'FEEDBACK_EVENT_DISMISS',
] as const;
export type FeedbackEventName = (typeof FEEDBACK_EVENTS)[number];
