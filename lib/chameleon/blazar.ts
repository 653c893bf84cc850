/**
 * A client of Blazar's v1 lease API (Chameleon's reservation service), which no terraform provider covers. Creation is
 * idempotent by name: a retried activity finds the lease its first attempt made (even one whose answer was lost)
 * instead of paying for a second. `waitUntilActive` gives the reservation ids, which are what instances are launched
 * under (the bare-metal scheduler hint; the flavor on KVM), not the lease id.
 */
import { z } from 'zod';
import { ChameleonHttpError, requestJson, type Method } from './http';
import type { Session } from './keystone';
import { leaseRequestBody, nodeTypeProperties, type LeaseSpec } from './lease-request';

export const RESERVATION_SERVICE = 'reservation';
/** Reservation types instances are launched under. */
export const COMPUTE_RESERVATION_TYPES: readonly string[] = ['physical:host', 'flavor:instance'];
/** Statuses of a lease that still holds (or will hold) resources. Anything unknown counts as live too. */
const GONE = new Set(['TERMINATING', 'TERMINATED', 'DELETING']);
const WAITING = new Set(['CREATING', 'PENDING', 'STARTING', 'UPDATING']);

const count = z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).nullish();
const ReservationSchema = z.object({
  id: z.string(),
  resource_type: z.string(),
  status: z.string(),
  min: count,
  max: count,
  amount: count,
  resource_properties: z.string().nullish(),
  flavor_id: z.string().nullish(),
});
export type Reservation = z.infer<typeof ReservationSchema>;

const LeaseSchema = z.object({
  id: z.string(),
  name: z.string(),
  status: z.string(),
  start_date: z.string(),
  end_date: z.string(),
  // Some Blazar versions return the reservations as a JSON string (python-chi unpacks it the same way).
  reservations: z.preprocess((v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  }, z.array(ReservationSchema)),
});

/** A lease as Blazar reports it (dates as Blazar writes them: parseBlazarDate reads them). */
export type Lease = z.infer<typeof LeaseSchema>;

/** The lease cannot become usable: ERROR, ended, deleted, or reserved for something else. */
export class LeaseFailedError extends Error {
  override readonly name = 'LeaseFailedError';
  constructor(
    readonly leaseId: string,
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}

export class LeaseTimeoutError extends Error {
  override readonly name = 'LeaseTimeoutError';
  constructor(
    readonly leaseId: string,
    readonly status: string,
    message: string,
  ) {
    super(message);
  }
}

export interface BlazarOptions {
  /** Deadline of one request, ms (default 30 s). */
  timeoutMs?: number;
}

export interface WaitOptions {
  /** Called after every poll: heartbeats, progress. */
  onPoll?: (lease: Lease, elapsedMs: number) => void;
  signal?: AbortSignal;
  /** Give up after this long, ms (default 15 min). */
  timeoutMs?: number;
  /** Between polls, ms (default 10 s, python-chi's). */
  intervalMs?: number;
}

/** The Blazar API root from a catalog URL, which may or may not end in the version. */
export function blazarBase(endpoint: string): string {
  const base = endpoint.replace(/\/+$/, '');
  return /\/v1$/.test(base) ? base : `${base}/v1`;
}

const describe = (lease: Lease) => `lease ${JSON.stringify(lease.name)} (${lease.id})`;

/** Resolves after `ms`, or rejects with the signal's reason when it is aborted first. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Why an existing lease of the spec's name does not hold what the spec asks for, or undefined when it does. */
function mismatch(lease: Lease, spec: LeaseSpec): string | undefined {
  const compute = lease.reservations.filter((r) => COMPUTE_RESERVATION_TYPES.includes(r.resource_type));
  const r = compute[0];
  if (compute.length !== 1 || !r) return `it has ${compute.length} host/flavor reservations, expected 1`;
  if (spec.nodeType !== undefined) {
    if (r.resource_type !== 'physical:host') return `its reservation is ${r.resource_type}, not physical:host`;
    let props: unknown;
    try {
      props = JSON.parse(r.resource_properties ?? '');
    } catch {
      props = undefined;
    }
    const wanted = JSON.parse(nodeTypeProperties(spec.nodeType)) as string[];
    // Blazar reads "=" as "==".
    const same =
      Array.isArray(props) &&
      props.length === 3 &&
      (props[0] === '==' || props[0] === '=') &&
      props[1] === wanted[1] &&
      props[2] === wanted[2];
    if (!same)
      return `its resource_properties are ${JSON.stringify(r.resource_properties)}, not node type ${spec.nodeType}`;
    if (r.min !== spec.count || r.max !== spec.count)
      return `it reserves min ${r.min} / max ${r.max} hosts, not ${spec.count}`;
  } else {
    if (r.resource_type !== 'flavor:instance') return `its reservation is ${r.resource_type}, not flavor:instance`;
    if (r.flavor_id !== spec.flavorId) return `it reserves flavor ${r.flavor_id}, not ${spec.flavorId}`;
    if (r.amount !== spec.count) return `it reserves ${r.amount} instances, not ${spec.count}`;
  }
  return undefined;
}

export class BlazarClient {
  private readonly timeoutMs: number;

  constructor(
    private readonly session: Session,
    opts: BlazarOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /**
   * The lease named `spec.name`: the live one that exists, else a new one. Returns `created: false` when it was found.
   * A lease of that name in ERROR, or holding other resources than the spec asks for, is an error (delete it first).
   * Two concurrent calls with one name can still make two leases: Blazar does not enforce unique names.
   */
  async createLease(
    spec: LeaseSpec,
    opts: { signal?: AbortSignal; now?: Date } = {},
  ): Promise<{ lease: Lease; created: boolean }> {
    // Checked before any request: a spec beyond the cost cap never reaches Blazar.
    const body = leaseRequestBody(spec, opts.now ?? new Date());
    const existing = await this.findLeaseByName(spec.name, opts.signal);
    if (existing) {
      if (existing.status === 'ERROR')
        throw new LeaseFailedError(
          existing.id,
          existing.status,
          `${describe(existing)} exists in status ERROR: delete it before creating it again`,
        );
      const why = mismatch(existing, spec);
      if (why)
        throw new LeaseFailedError(
          existing.id,
          existing.status,
          `${describe(existing)} exists but does not match the request: ${why}`,
        );
      return { lease: existing, created: false };
    }
    const json = await this.call('POST', '/leases', body, opts.signal);
    return { lease: this.parse(z.object({ lease: LeaseSchema }), json, 'POST /leases').lease, created: true };
  }

  async getLease(id: string, signal?: AbortSignal): Promise<Lease> {
    const json = await this.call('GET', `/leases/${encodeURIComponent(id)}`, undefined, signal);
    return this.parse(z.object({ lease: LeaseSchema }), json, `GET /leases/${id}`).lease;
  }

  /** All leases of the project (Blazar filters nothing server-side), or those whose name starts with `prefix`. */
  async listLeases(prefix?: string, signal?: AbortSignal): Promise<Lease[]> {
    const json = await this.call('GET', '/leases', undefined, signal);
    const leases = this.parse(z.object({ leases: z.array(LeaseSchema) }), json, 'GET /leases').leases;
    return prefix === undefined ? leases : leases.filter((l) => l.name.startsWith(prefix));
  }

  /** The live lease (not ended or being deleted) of that name; an error if there are several. */
  async findLeaseByName(name: string, signal?: AbortSignal): Promise<Lease | undefined> {
    const live = (await this.listLeases(undefined, signal)).filter((l) => l.name === name && !GONE.has(l.status));
    if (live.length > 1)
      throw new LeaseFailedError(
        live[0]!.id,
        live[0]!.status,
        `${live.length} live leases are named ${JSON.stringify(name)}: ${live.map((l) => `${l.id} (${l.status})`).join(', ')}`,
      );
    return live[0];
  }

  /** Deletes a lease; one that is already gone is fine. */
  async deleteLease(id: string, signal?: AbortSignal): Promise<'deleted' | 'absent'> {
    try {
      await this.call('DELETE', `/leases/${encodeURIComponent(id)}`, undefined, signal);
      return 'deleted';
    } catch (err) {
      if (err instanceof ChameleonHttpError && err.notFound) return 'absent';
      throw err;
    }
  }

  /**
   * Deletes every lease of that name, whatever its status, so no record is left: the undo of createLease when its
   * answer (the id) may have been lost. Returns the ids deleted.
   */
  async deleteLeasesByName(name: string, signal?: AbortSignal): Promise<string[]> {
    const deleted: string[] = [];
    for (const lease of (await this.listLeases(undefined, signal)).filter((l) => l.name === name))
      if ((await this.deleteLease(lease.id, signal)) === 'deleted') deleted.push(lease.id);
    return deleted;
  }

  /**
   * Polls until the lease is ACTIVE and returns it with the ids of its host/flavor reservations. ERROR, an ended or
   * deleted lease, and the deadline fail with the lease's name, id and status.
   */
  async waitUntilActive(id: string, opts: WaitOptions = {}): Promise<{ lease: Lease; reservationIds: string[] }> {
    const timeoutMs = opts.timeoutMs ?? 15 * 60_000;
    const intervalMs = opts.intervalMs ?? 10_000;
    const started = Date.now();
    for (;;) {
      let lease: Lease;
      try {
        lease = await this.getLease(id, opts.signal);
      } catch (err) {
        if (err instanceof ChameleonHttpError && err.notFound)
          throw new LeaseFailedError(id, 'DELETED', `lease ${id} no longer exists`);
        throw err;
      }
      const elapsed = Date.now() - started;
      opts.onPoll?.(lease, elapsed);
      if (lease.status === 'ACTIVE') {
        const reservationIds = lease.reservations
          .filter((r) => COMPUTE_RESERVATION_TYPES.includes(r.resource_type))
          .map((r) => r.id);
        if (reservationIds.length === 0)
          throw new LeaseFailedError(
            id,
            lease.status,
            `${describe(lease)} is ACTIVE but has no host or flavor reservation`,
          );
        return { lease, reservationIds };
      }
      if (lease.status === 'ERROR' || GONE.has(lease.status)) {
        const reservations = lease.reservations.map((r) => `${r.id} ${r.status}`).join(', ') || 'none';
        throw new LeaseFailedError(
          id,
          lease.status,
          `${describe(lease)} went to ${lease.status} instead of ACTIVE (reservations: ${reservations})`,
        );
      }
      if (elapsed + intervalMs > timeoutMs)
        throw new LeaseTimeoutError(
          id,
          lease.status,
          `${describe(lease)} is still ${lease.status} after ${Math.round(elapsed / 1000)} s (start ${lease.start_date} UTC)` +
            (WAITING.has(lease.status) ? '' : ' (a status this client does not know)'),
        );
      await pause(intervalMs, opts.signal);
    }
  }

  /** One Blazar call; a rejected token (revoked, expired early) is renewed once. */
  private async call(method: Method, path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.session.token(signal);
      const base = blazarBase(await this.session.endpoint(RESERVATION_SERVICE, signal));
      try {
        const res = await requestJson({
          service: 'Blazar',
          method,
          url: `${base}${path}`,
          headers: { 'x-auth-token': token },
          body,
          timeoutMs: this.timeoutMs,
          ...(signal ? { signal } : {}),
        });
        return res.json;
      } catch (err) {
        if (attempt === 0 && err instanceof ChameleonHttpError && err.status === 401) {
          this.session.invalidate();
          continue;
        }
        throw err;
      }
    }
  }

  private parse<S extends z.ZodType>(schema: S, json: unknown, what: string): z.infer<S> {
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`Blazar ${what}: unexpected answer: ${issue.path.join('.') || '(body)'}: ${issue.message}`);
    }
    return parsed.data;
  }
}
