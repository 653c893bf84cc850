/**
 * The recsys.v1.Admin handlers over a ModelPool: load and unload versions, set the traffic policy, report the state.
 * Every call is idempotent (a retried deployment activity does no harm): loading a held version answers OK with
 * `already_loaded`, unloading one that is not held answers OK with `was_loaded` false, and setting the same policy
 * twice changes nothing. Errors go back as status codes naming what was wrong; the pool is unchanged by them.
 *
 * SetFault injects latency, errors or random rankings into one version's requests, only on a server started with
 * --allow-faults (demonstrations of a rollback), and only until its TTL runs out.
 *
 * Every call needs the admin token (lib/admin-token.ts) as metadata `authorization: Bearer <token>`
 * (requireAdminToken): the server binds loopback only (server.ts), but on a shared machine that still lets every local
 * process re-route production's traffic, so the token is what makes a caller an operator.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { status, type Metadata, type ServiceError, type handleUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { ADMIN_TOKEN_ENV, ADMIN_TOKEN_METADATA } from '../lib/admin-token';
import { ModelLoadError, messageOf } from './errors';
import { faultOf, faultTtlOf, type FaultTable } from './faults';
import type { LoadedModel } from './loaded-model';
import { PoolConflictError, type ModelPool } from './model-pool';
import type { ModelRef } from './model-ref';
import type { AdminHandlers, LoadedVersion, TrafficPolicyMessage } from './proto';
import { PolicyError, type TrafficPolicy } from './traffic-policy';

const fail = (code: status, details: string): Partial<ServiceError> => ({ code, details });

/** The status for anything the pool rejects with. */
function statusOf(err: unknown): status {
  if (err instanceof PolicyError) return status.INVALID_ARGUMENT;
  if (err instanceof PoolConflictError || err instanceof ModelLoadError) return status.FAILED_PRECONDITION;
  return status.INTERNAL;
}

/** Validates a LoadVersion request into a reference; a string saying what is wrong otherwise. */
export function refOf(req: { model: string; version: string; alias: string }): ModelRef | string {
  if (!req.model) return 'model is required (a registered model name)';
  if (req.version && req.alias)
    return `give version or alias, not both (version: ${JSON.stringify(req.version)}, alias: ${JSON.stringify(req.alias)})`;
  if (req.version) {
    if (!/^\d+$/.test(req.version))
      return `version must be a registry version number (value: ${JSON.stringify(req.version)})`;
    return { name: req.model, version: req.version };
  }
  if (!req.alias) return 'version or alias is required';
  if (!/^[A-Za-z0-9_-]+$/.test(req.alias))
    return `alias must match [A-Za-z0-9_-]+ (value: ${JSON.stringify(req.alias)})`;
  return { name: req.model, alias: req.alias };
}

export function loadedVersion(model: LoadedModel, weight: number): LoadedVersion {
  const v = model.version;
  return {
    model_name: v.name,
    model_version: v.version,
    dataset_name: v.dataset.name,
    dataset_version: v.dataset.version,
    aliases: v.aliases,
    weight,
  };
}

const policyMessage = (p: TrafficPolicy): TrafficPolicyMessage => p.toJSON();

/** `faults`: present when the server accepts SetFault (started with --allow-faults). */
export function adminHandlers(pool: ModelPool, faults?: FaultTable): AdminHandlers {
  const answer = <T>(work: Promise<T>, callback: (err: Partial<ServiceError> | null, res?: T) => void) =>
    work.then(
      (res) => callback(null, res),
      (err: unknown) => callback(fail(statusOf(err), messageOf(err))),
    );

  return {
    LoadVersion(call, callback) {
      const ref = refOf(call.request);
      if (typeof ref === 'string') return callback(fail(status.INVALID_ARGUMENT, ref));
      void answer(
        pool.loadVersion(ref).then(({ model, alreadyLoaded }) => ({
          version: loadedVersion(model, pool.policy?.weightOf(model.version.version) ?? 0),
          already_loaded: alreadyLoaded,
        })),
        callback,
      );
    },

    UnloadVersion(call, callback) {
      const version = call.request.model_version;
      if (!version) return callback(fail(status.INVALID_ARGUMENT, 'model_version is required'));
      void answer(
        pool.unload(version).then((was_loaded) => ({ was_loaded })),
        callback,
      );
    },

    SetTrafficPolicy(call, callback) {
      const p = call.request.policy;
      if (!p) return callback(fail(status.INVALID_ARGUMENT, 'policy is required'));
      // An empty salt means "keep the current one", so that a rollout changing weights keeps users where they were.
      void answer(
        pool.setPolicy(p.weights, p.salt || undefined).then((applied) => ({ policy: policyMessage(applied) })),
        callback,
      );
    },

    GetState(_call, callback) {
      const { versions, policy } = pool.state();
      callback(null, {
        versions: versions.map(({ model, weight }) => loadedVersion(model, weight)),
        policy: policy && policyMessage(policy),
        faults: faults?.toJSON() ?? {},
        faults_allowed: faults !== undefined,
        fault_expires_at_ms: faults?.expiries() ?? {},
      });
    },

    SetFault(call, callback) {
      if (!faults)
        return callback(
          fail(status.FAILED_PRECONDITION, 'fault injection is off; start the server with --allow-faults to use it'),
        );
      const version = call.request.model_version;
      if (!version) return callback(fail(status.INVALID_ARGUMENT, 'model_version is required'));
      const fault = faultOf(call.request.fault);
      if (typeof fault === 'string') return callback(fail(status.INVALID_ARGUMENT, fault));
      const ttlMs = faultTtlOf(call.request.ttl_seconds);
      if (typeof ttlMs === 'string') return callback(fail(status.INVALID_ARGUMENT, ttlMs));
      faults.set(version, fault, ttlMs);
      callback(null, { faults: faults.toJSON() });
    },
  };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Why a call's metadata does not carry `token`, or undefined when it does. */
export function tokenProblem(metadata: Metadata, token: string): string | undefined {
  const sent = metadata.get(ADMIN_TOKEN_METADATA);
  if (sent.length === 0)
    return (
      `recsys.v1.Admin needs the admin token: send metadata "${ADMIN_TOKEN_METADATA}: Bearer <token>" ` +
      `(the token is $${ADMIN_TOKEN_ENV}, else the file $RECSYS_STACK_DIR/admin-token)`
    );
  const value = String(sent[0]);
  const presented = value.startsWith('Bearer ') ? value.slice('Bearer '.length) : undefined;
  if (presented === undefined) return `metadata "${ADMIN_TOKEN_METADATA}" must be "Bearer <token>"`;
  // Digests of equal length, compared in constant time: the answer time says nothing about the token.
  if (!timingSafeEqual(digest(presented), digest(token)))
    return `the admin token sent does not match this server's ($${ADMIN_TOKEN_ENV} or $RECSYS_STACK_DIR/admin-token)`;
  return undefined;
}

/** `handlers` answering UNAUTHENTICATED to any call whose metadata does not carry `token`. */
export function requireAdminToken(handlers: AdminHandlers, token: string): AdminHandlers {
  const guarded: Record<string, handleUnaryCall<unknown, unknown>> = {};
  for (const [name, handler] of Object.entries(handlers) as [string, handleUnaryCall<unknown, unknown>][]) {
    guarded[name] = (call, callback: sendUnaryData<unknown>) => {
      const problem = tokenProblem(call.metadata, token);
      if (problem) return callback(fail(status.UNAUTHENTICATED, problem));
      handler(call, callback);
    };
  }
  return guarded as unknown as AdminHandlers;
}
