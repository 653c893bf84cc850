/**
 * The serving tier's Admin calls (recsys.v1.Admin), each on a client opened for it and with a deadline: what the
 * deployment activities, the simulator and the CLI use to read and steer a replica. Every call carries the admin token
 * (serving/client.ts adminClient; lib/admin-token.ts): RECSYS_ADMIN_TOKEN, else `$RECSYS_STACK_DIR/admin-token`, the
 * same one the replicas started from this environment read.
 */
import type { ServiceError } from '@grpc/grpc-js';
import { adminClient } from '../serving/client';
import type { FaultMessage } from '../serving/faults';
import type { AdminClient } from '../serving/proto';
import type { GetStateResponse__Output } from '../proto/generated/recsys/v1/GetStateResponse';
import type { LoadVersionResponse__Output } from '../proto/generated/recsys/v1/LoadVersionResponse';
import type { SetFaultResponse__Output } from '../proto/generated/recsys/v1/SetFaultResponse';
import type { SetTrafficPolicyResponse__Output } from '../proto/generated/recsys/v1/SetTrafficPolicyResponse';

export type ServerState = GetStateResponse__Output;

type Callback<Res> = (err: ServiceError | null, res?: Res) => void;

/** One Admin call with a deadline, on a client opened for it. */
export async function adminCall<Res>(
  address: string,
  timeoutMs: number,
  call: (c: AdminClient, opts: { deadline: number }, cb: Callback<Res>) => void,
): Promise<Res> {
  const c = adminClient(address);
  try {
    return await new Promise<Res>((resolve, reject) =>
      call(c, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
  } finally {
    c.close();
  }
}

export const serverState = (address: string, timeoutMs = 5000) =>
  adminCall<ServerState>(address, timeoutMs, (c, o, cb) => c.GetState({}, o, cb));

export const loadVersion = (address: string, model: string, version: string, timeoutMs: number) =>
  adminCall<LoadVersionResponse__Output>(address, timeoutMs, (c, o, cb) => c.LoadVersion({ model, version }, o, cb));

export const unloadVersion = (address: string, version: string, timeoutMs = 30_000) =>
  adminCall(address, timeoutMs, (c, o, cb) => c.UnloadVersion({ model_version: version }, o, cb));

export const setTrafficPolicy = (address: string, weights: Record<string, number>, salt = '', timeoutMs = 10_000) =>
  adminCall<SetTrafficPolicyResponse__Output>(address, timeoutMs, (c, o, cb) =>
    c.SetTrafficPolicy({ policy: { weights, salt } }, o, cb),
  );

/** `ttlSeconds`: how long the fault lasts unless cleared first (0: the server's default, 600 s; at most 3600). */
export const setServerFault = (
  address: string,
  version: string,
  fault: FaultMessage,
  timeoutMs = 10_000,
  ttlSeconds = 0,
) =>
  adminCall<SetFaultResponse__Output>(address, timeoutMs, (c, o, cb) =>
    c.SetFault({ model_version: version, fault, ttl_seconds: ttlSeconds }, o, cb),
  );
