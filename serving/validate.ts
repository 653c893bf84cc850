/**
 * Request checks that run before any model work. Each message names the field and the limit it broke, so a caller can
 * fix the request without reading our code; the service returns them as INVALID_ARGUMENT. A field the contract does
 * not define (marked at decoding: unknown-fields.ts) comes first.
 */
import { FEEDBACK_EVENTS } from '../lib/feedback-events';
import type { FeedbackRequest, RecommendRequest } from './proto';
import { unknownFieldOf } from './unknown-fields';

export interface RequestLimits {
  /** The largest k: the model's top_k (the graph returns no more candidates than that). */
  topK: number;
  /** Longest history a request may carry (the model reads only its most recent history_len items). */
  maxHistory: number;
  maxExcludes: number;
  /** Longest user or item id, in characters. */
  maxIdLength: number;
}

export const DEFAULT_LIMITS: Omit<RequestLimits, 'topK'> = { maxHistory: 1000, maxExcludes: 1000, maxIdLength: 256 };

function checkId(field: string, value: string, maxLength: number): string | undefined {
  if (value === '') return `${field} is required`;
  if (value.length > maxLength) return `${field} is ${value.length} characters long; the limit is ${maxLength}`;
  return undefined;
}

/** The first problem of a Recommend request, or undefined when it is valid. */
export function recommendProblem(req: RecommendRequest, limits: RequestLimits): string | undefined {
  const unknown = unknownFieldOf(req);
  if (unknown) return unknown;
  const user = checkId('user_id', req.user_id, limits.maxIdLength);
  if (user) return user;
  if (!Number.isInteger(req.k) || req.k < 1 || req.k > limits.topK)
    return `k must be between 1 and ${limits.topK} (the model's top_k), got ${req.k}`;
  if (req.history.length > limits.maxHistory)
    return `history has ${req.history.length} items; the limit is ${limits.maxHistory}`;
  for (let i = 0; i < req.history.length; i++) {
    const item = checkId(`history[${i}].item_id`, req.history[i]!.item_id, limits.maxIdLength);
    if (item) return item;
  }
  if (req.exclude_item_ids.length > limits.maxExcludes)
    return `exclude_item_ids has ${req.exclude_item_ids.length} items; the limit is ${limits.maxExcludes}`;
  return undefined;
}

const EVENTS: ReadonlySet<string> = new Set(FEEDBACK_EVENTS);

/** The first problem of a Feedback request, or undefined when it is valid. */
export function feedbackProblem(req: FeedbackRequest, limits: Omit<RequestLimits, 'topK'>): string | undefined {
  const unknown = unknownFieldOf(req);
  if (unknown) return unknown;
  const id = checkId('user_id', req.user_id, limits.maxIdLength) ?? checkId('item_id', req.item_id, limits.maxIdLength);
  if (id) return id;
  if (!EVENTS.has(String(req.event))) return `event must be one of ${[...EVENTS].join(', ')}, got ${String(req.event)}`;
  if (req.request_id.length > limits.maxIdLength)
    return `request_id is ${req.request_id.length} characters long; the limit is ${limits.maxIdLength}`;
  if (req.event_id.length > limits.maxIdLength)
    return `event_id is ${req.event_id.length} characters long; the limit is ${limits.maxIdLength}`;
  if (!Number.isFinite(req.value)) return `value must be a finite number, got ${req.value}`;
  return undefined;
}
