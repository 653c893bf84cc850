/**
 * What a run asks Blazar for, checked, and the POST /v1/leases body python-chi builds for it: a `physical:host`
 * reservation constrained to a node type with min = max = N (bare metal: CHI@TACC, CHI@UC), or a `flavor:instance`
 * reservation of N instances of a flavor (KVM@TACC). Dates are Blazar's "YYYY-MM-DD HH:MM" in UTC; the end date is what
 * bounds the cost, so one further than `maxHours` after the start is refused before any request is made.
 */

export interface LeaseSpec {
  /** Unique per run (`recsys-<cluster-id>`): a retry finds the lease by it instead of making a second. */
  name: string;
  /** Bare metal: a Chameleon node type such as gpu_rtx_6000. Give exactly one of nodeType and flavorId. */
  nodeType?: string;
  /** KVM@TACC: the id of the flavor to reserve instances of. */
  flavorId?: string;
  /** Nodes (or instances) to reserve. */
  count: number;
  /** 'now' (default) or a start date. */
  start?: 'now' | Date;
  end: Date;
  /** The longest lease allowed, hours (default 24). */
  maxHours?: number;
}

export type HostReservationRequest = {
  resource_type: 'physical:host';
  resource_properties: string;
  hypervisor_properties: '';
  min: number;
  max: number;
};
export type FlavorReservationRequest = {
  resource_type: 'flavor:instance';
  flavor_id: string;
  amount: number;
  affinity: null;
};

export interface LeaseRequestBody {
  name: string;
  start_date: string;
  end_date: string;
  reservations: (HostReservationRequest | FlavorReservationRequest)[];
  events: [];
}

export const DEFAULT_MAX_LEASE_HOURS = 24;
/** Blazar limits a lease name to 80 characters. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/;
const NODE_TYPE = /^[a-z0-9][a-z0-9_-]*$/;
const FLAVOR_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const MINUTE = 60_000;

export class LeaseSpecError extends Error {
  override readonly name = 'LeaseSpecError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`lease spec field '${field}' ${reason} (value: ${JSON.stringify(value)})`);
  }
}

/** Blazar's date format, in UTC, to the minute (seconds are dropped, so a lease never ends later than asked). */
export function blazarDate(d: Date): string {
  return d.toISOString().slice(0, 16).replace('T', ' ');
}

/** A date as Blazar returns it ("2017-12-26T12:00:00.000000", UTC without a zone) as a Date. */
export function parseBlazarDate(s: string): Date {
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(s.trim());
  if (!m) throw new Error(`not a Blazar date: ${JSON.stringify(s)}`);
  const ms = (m[4] ?? '0').padEnd(3, '0').slice(0, 3);
  return new Date(`${m[1]}T${m[2]}:${m[3] ?? '00'}.${ms}${m[5] ?? 'Z'}`);
}

/** The node-type constraint, serialised exactly as python-chi's json.dumps does (", " between items). */
export function nodeTypeProperties(nodeType: string): string {
  return `[${['==', '$node_type', nodeType].map((s) => JSON.stringify(s)).join(', ')}]`;
}

const floorMinute = (t: number) => Math.floor(t / MINUTE) * MINUTE;
const validDate = (d: unknown): d is Date => d instanceof Date && !Number.isNaN(d.getTime());

/** Checks a spec against Blazar's rules and the cost cap; `now` is the caller's clock. */
export function checkLeaseSpec(spec: LeaseSpec, now: Date): void {
  if (!NAME.test(spec.name))
    throw new LeaseSpecError(
      'name',
      spec.name,
      'must be 1-80 letters, digits, _ . - (starting with a letter or digit)',
    );
  if ((spec.nodeType === undefined) === (spec.flavorId === undefined))
    throw new LeaseSpecError('nodeType', spec.nodeType ?? null, 'or flavorId must be given, and not both');
  if (spec.nodeType !== undefined && !NODE_TYPE.test(spec.nodeType))
    throw new LeaseSpecError('nodeType', spec.nodeType, 'must be a Chameleon node type such as gpu_rtx_6000');
  if (spec.flavorId !== undefined && !FLAVOR_ID.test(spec.flavorId))
    throw new LeaseSpecError('flavorId', spec.flavorId, 'must be a flavor id');
  if (!Number.isInteger(spec.count) || spec.count < 1 || spec.count > 100)
    throw new LeaseSpecError('count', spec.count, 'must be a whole number from 1 to 100');
  const maxHours = spec.maxHours ?? DEFAULT_MAX_LEASE_HOURS;
  if (!Number.isFinite(maxHours) || maxHours <= 0) throw new LeaseSpecError('maxHours', maxHours, 'must be positive');
  const start = spec.start ?? 'now';
  if (start !== 'now' && !validDate(start)) throw new LeaseSpecError('start', String(start), "must be 'now' or a date");
  if (!validDate(spec.end)) throw new LeaseSpecError('end', String(spec.end), 'must be a date');
  if (start !== 'now' && floorMinute(start.getTime()) < floorMinute(now.getTime()))
    throw new LeaseSpecError('start', start.toISOString(), 'is in the past');
  const startMs = start === 'now' ? now.getTime() : floorMinute(start.getTime());
  const lengthMs = floorMinute(spec.end.getTime()) - startMs;
  if (lengthMs < MINUTE)
    throw new LeaseSpecError(
      'end',
      spec.end.toISOString(),
      'must be at least a minute after the start (to the minute)',
    );
  if (lengthMs > maxHours * 3_600_000)
    throw new LeaseSpecError(
      'end',
      spec.end.toISOString(),
      `is ${(lengthMs / 3_600_000).toFixed(2)} h after the start, beyond the maximum lease of ${maxHours} h`,
    );
}

/** The POST /v1/leases body for a checked spec. */
export function leaseRequestBody(spec: LeaseSpec, now: Date): LeaseRequestBody {
  checkLeaseSpec(spec, now);
  const start = spec.start ?? 'now';
  const reservation: HostReservationRequest | FlavorReservationRequest =
    spec.nodeType !== undefined
      ? {
          resource_type: 'physical:host',
          resource_properties: nodeTypeProperties(spec.nodeType),
          hypervisor_properties: '',
          min: spec.count,
          max: spec.count,
        }
      : { resource_type: 'flavor:instance', flavor_id: spec.flavorId!, amount: spec.count, affinity: null };
  return {
    name: spec.name,
    start_date: start === 'now' ? 'now' : blazarDate(start),
    end_date: blazarDate(spec.end),
    reservations: [reservation],
    events: [],
  };
}
