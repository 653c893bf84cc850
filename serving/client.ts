/** A typed Recommender client, for the CLI, tests and benchmarks. */
import * as grpc from '@grpc/grpc-js';
import type { FeedbackRequest } from '../proto/generated/recsys/v1/FeedbackRequest';
import type { RecommendRequest } from '../proto/generated/recsys/v1/RecommendRequest';
import { recsysV1, type AdminClient, type RecommendResponse__Output, type RecommenderClient } from './proto';

export function recommenderClient(address: string, options: grpc.ClientOptions = {}): RecommenderClient {
  return new (recsysV1().Recommender)(address, grpc.credentials.createInsecure(), options);
}

const deadline = (ms: number) => ({ deadline: Date.now() + ms });

export function recommend(
  client: RecommenderClient,
  req: RecommendRequest,
  timeoutMs = 10_000,
): Promise<RecommendResponse__Output> {
  return new Promise((resolve, reject) =>
    client.Recommend(req, deadline(timeoutMs), (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

export function feedback(client: RecommenderClient, req: FeedbackRequest, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) =>
    client.Feedback(req, deadline(timeoutMs), (err) => (err ? reject(err) : resolve())),
  );
}

/** A typed Admin client (loopback only: the server binds 127.0.0.1). */
export function adminClient(address: string, options: grpc.ClientOptions = {}): AdminClient {
  return new (recsysV1().Admin)(address, grpc.credentials.createInsecure(), options);
}
