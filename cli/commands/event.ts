/**
 * `recsys event`: tells a running `recsys serve` what a user did with an item (one Feedback call over gRPC, or one
 * POST /v1/events with --http) and prints whether the online store recorded it or already had it (a retry). A
 * recorded event that means interest (a click, an add-to-cart, a purchase, a high rating) is in the history of the
 * user's next `recsys recommend`.
 */
import type { Command } from 'commander';
import type * as grpc from '@grpc/grpc-js';
import { FEEDBACK_EVENTS, type FeedbackEventName } from '../../lib/feedback-events';
import { recommenderClient } from '../../serving/client';
import { DEFAULT_HTTP_URL, httpEvent } from '../../serving/http/client';
import type { FeedbackRequest, FeedbackResponse } from '../../serving/proto';
import { httpUrlOf } from './recommend';

/** `click`, `add-to-cart`, `ADD_TO_CART` or `FEEDBACK_EVENT_CLICK` -> the FeedbackEvent name. */
export function eventTypeOf(type: string): FeedbackEventName {
  const name = `FEEDBACK_EVENT_${type
    .trim()
    .toUpperCase()
    .replace(/^FEEDBACK_EVENT_/, '')
    .replace(/-/g, '_')}`;
  const found = FEEDBACK_EVENTS.find((e) => e === name);
  if (!found)
    throw new Error(
      `--type must be one of ${FEEDBACK_EVENTS.map((e) => e.replace('FEEDBACK_EVENT_', '').toLowerCase().replace(/_/g, '-')).join(', ')}, got ${JSON.stringify(type)}`,
    );
  return found;
}

/** What the server said about the event, in words. */
export function outcomeText(r: FeedbackResponse): string {
  if (r.duplicate) return 'duplicate: the online store had already recorded this event; nothing changed';
  if (r.recorded_online) return 'recorded in the online store';
  return 'not recorded in the online store (unavailable, or the server runs without one); it is in the feedback log';
}

function grpcFeedback(address: string, req: FeedbackRequest, timeoutMs: number): Promise<FeedbackResponse> {
  const client = recommenderClient(address);
  return new Promise<FeedbackResponse>((resolve, reject) =>
    client.Feedback(req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res) =>
      err ? reject(err) : resolve(res!),
    ),
  ).finally(() => client.close());
}

const finite = (flag: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} must be a number, got ${JSON.stringify(v)}`);
  return n;
};

export function registerEventCommand(program: Command): void {
  program
    .command('event')
    .description('send a user event (click, purchase, ...) to a running `recsys serve` (gRPC, or HTTP with --http)')
    .requiredOption('--user <id>', 'user id')
    .requiredOption('--item <id>', 'item id')
    .option(
      '--type <event>',
      `${FEEDBACK_EVENTS.map((e) => e.replace('FEEDBACK_EVENT_', '').toLowerCase().replace(/_/g, '-')).join(', ')}`,
      'click',
    )
    .option('--value <v>', 'a magnitude: a rating, a price, a watch time', finite('--value'), 0)
    .option('--request-id <id>', 'the request_id of the recommendation the event is about')
    .option('--event-id <id>', 'makes a retry count once (default: request id + item + event + time)')
    .option('--time-ms <ms>', 'when it happened, epoch milliseconds (default: now)', finite('--time-ms'))
    .option('--address <host:port>', 'gRPC server address', '127.0.0.1:50051')
    .option('--http [url]', `use the HTTP/JSON API instead of gRPC (default URL ${DEFAULT_HTTP_URL})`)
    .option('--timeout <ms>', 'deadline of the call', (v) => Number(v), 10_000)
    .option('--json', 'print the response as JSON', false)
    .action(
      async (opts: {
        user: string;
        item: string;
        type: string;
        value: number;
        requestId?: string;
        eventId?: string;
        timeMs?: number;
        address: string;
        http?: string | boolean;
        timeout: number;
        json: boolean;
      }) => {
        const timeMs = opts.timeMs ?? Date.now();
        if (!Number.isInteger(timeMs) || timeMs < 0)
          throw new Error(`--time-ms must be a non-negative integer, got ${timeMs}`);
        const req: FeedbackRequest = {
          request_id: opts.requestId ?? '',
          user_id: opts.user,
          item_id: opts.item,
          event: eventTypeOf(opts.type),
          timestamp_ms: timeMs,
          value: opts.value,
          event_id: opts.eventId ?? '',
        };
        const url = httpUrlOf(opts.http);
        const res = url
          ? (await httpEvent(url, req, opts.timeout)).body
          : await grpcFeedback(opts.address, req, opts.timeout);
        if (opts.json) {
          console.log(JSON.stringify(res, null, 2));
          return;
        }
        console.log(`${req.event} by ${req.user_id} on ${req.item_id} at ${new Date(timeMs).toISOString()}`);
        console.log(`Via:       ${url ? `HTTP ${url}` : `gRPC ${opts.address}`}`);
        console.log(`Outcome:   ${outcomeText(res)}`);
      },
    );
}
