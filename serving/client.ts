/** Typed Recommender and Admin clients, for the CLI, the fleet, tests and benchmarks. */
import * as grpc from '@grpc/grpc-js';
import { ADMIN_TOKEN_METADATA, adminToken } from '../lib/admin-token';
import type { FeedbackRequest } from '../proto/generated/recsys/v1/FeedbackRequest';
import type { RecommendRequest } from '../proto/generated/recsys/v1/RecommendRequest';
import {
  packageDefinition,
  recsysV1,
  type AdminClient,
  type RecommendResponse__Output,
  type RecommenderClient,
} from './proto';

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

/**
 * Adds `authorization: Bearer <token>` to every call. An interceptor rather than call credentials: grpc-js refuses to
 * compose call credentials with an insecure channel, and the server is loopback-only plaintext.
 */
function withToken(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(ADMIN_TOKEN_METADATA, `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/**
 * A typed Admin client that sends the admin token with every call: `token`, by default lib/admin-token.ts' (from
 * RECSYS_ADMIN_TOKEN or the stack directory, as the servers started from the same environment read it).
 */
export function adminClient(
  address: string,
  options: grpc.ClientOptions = {},
  token: string = adminToken(),
): AdminClient {
  const interceptors = [withToken(token), ...(options.interceptors ?? [])];
  return new (recsysV1().Admin)(address, grpc.credentials.createInsecure(), { ...options, interceptors });
}

interface HealthClient extends grpc.Client {
  Check(
    req: { service: string },
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
  ): grpc.ClientUnaryCall;
}

/**
 * grpc.health.v1 Check of the whole server: `SERVING`, `NOT_SERVING`, ..., or `UNREACHABLE` when nothing answers
 * within `timeoutMs` (connection refused, no server on the port).
 */
export async function healthStatus(address: string, timeoutMs = 1000): Promise<string> {
  const Health = (
    grpc.loadPackageDefinition(packageDefinition()) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    }
  ).grpc.health.v1.Health;
  const client = new Health(address, grpc.credentials.createInsecure()) as unknown as HealthClient;
  try {
    return await new Promise<string>((resolve) =>
      client.Check({ service: '' }, deadline(timeoutMs), (err, res) =>
        resolve(
          err
            ? err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED
              ? 'UNREACHABLE'
              : `ERROR ${err.code}`
            : String(res?.status),
        ),
      ),
    );
  } finally {
    client.close();
  }
}
