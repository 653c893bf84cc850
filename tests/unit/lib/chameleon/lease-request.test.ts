/**
 * The lease body is the one python-chi builds (chi/lease.py: add_node_reservation, Lease.submit; blazarclient's
 * lease.create turns start/end into start_date/end_date), dates are Blazar's UTC minutes, and the cost cap refuses a
 * long lease before any request.
 */
import {
  blazarDate,
  leaseRequestBody,
  LeaseSpecError,
  nodeTypeProperties,
  parseBlazarDate,
} from '../../../../lib/chameleon/lease-request';

const now = new Date('2030-03-04T05:06:30.000Z');
const hours = (h: number) => new Date(now.getTime() + h * 3_600_000);

test('a bare-metal lease: physical:host, the node type constraint, min = max, start now', () => {
  expect(leaseRequestBody({ name: 'recsys-ab12', nodeType: 'gpu_rtx_6000', count: 2, end: hours(4) }, now)).toEqual({
    name: 'recsys-ab12',
    start_date: 'now',
    end_date: '2030-03-04 09:06',
    reservations: [
      {
        resource_type: 'physical:host',
        resource_properties: '["==", "$node_type", "gpu_rtx_6000"]',
        hypervisor_properties: '',
        min: 2,
        max: 2,
      },
    ],
    events: [],
  });
});

test('a KVM lease reserves instances of a flavor', () => {
  const body = leaseRequestBody({ name: 'recsys-ab12', flavorId: 'f-123', count: 3, end: hours(1) }, now);
  expect(body.reservations).toEqual([
    { resource_type: 'flavor:instance', flavor_id: 'f-123', amount: 3, affinity: null },
  ]);
});

test('dates are UTC to the minute, seconds dropped; Blazar dates read back as UTC', () => {
  expect(blazarDate(new Date('2030-12-31T23:59:59.999Z'))).toBe('2030-12-31 23:59');
  const start = new Date('2030-03-04T06:00:00Z');
  const body = leaseRequestBody({ name: 'x', nodeType: 'gpu_v100', count: 1, start, end: hours(3) }, now);
  expect(body.start_date).toBe('2030-03-04 06:00');
  expect(parseBlazarDate('2017-12-26T12:00:00.000000').toISOString()).toBe('2017-12-26T12:00:00.000Z');
  expect(parseBlazarDate('2017-12-26 12:00').toISOString()).toBe('2017-12-26T12:00:00.000Z');
  expect(nodeTypeProperties('gpu_a100_pcie')).toBe(
    JSON.stringify(['==', '$node_type', 'gpu_a100_pcie']).replace(/,/g, ', '),
  );
});

test('an end beyond the maximum lease is refused, at the default 24 h and at a configured maximum', () => {
  expect(() => leaseRequestBody({ name: 'x', nodeType: 'gpu_v100', count: 1, end: hours(24.5) }, now)).toThrow(
    `lease spec field 'end' is 24.49 h after the start, beyond the maximum lease of 24 h (value: "${hours(24.5).toISOString()}")`,
  );
  expect(() => leaseRequestBody({ name: 'x', nodeType: 'gpu_v100', count: 1, end: hours(24) }, now)).not.toThrow();
  expect(() =>
    leaseRequestBody({ name: 'x', nodeType: 'gpu_v100', count: 1, end: hours(3), maxHours: 2 }, now),
  ).toThrow(/beyond the maximum lease of 2 h/);
  // The cap counts from a future start, not from now.
  const start = hours(10);
  expect(() =>
    leaseRequestBody({ name: 'x', nodeType: 'gpu_v100', count: 1, start, end: hours(20), maxHours: 12 }, now),
  ).not.toThrow();
});

test.each([
  [{ end: hours(-1) }, 'end', 'must be at least a minute after the start'],
  [{ start: hours(-1) }, 'start', 'is in the past'],
  [{ count: 0 }, 'count', 'must be a whole number from 1 to 100'],
  [{ count: 1.5 }, 'count', 'must be a whole number from 1 to 100'],
  [{ name: 'has space' }, 'name', 'must be 1-80 letters'],
  [{ nodeType: 'GPU RTX' }, 'nodeType', 'must be a Chameleon node type'],
  [{ flavorId: 'f1' }, 'nodeType', 'or flavorId must be given, and not both'],
  [{ end: new Date('nope') }, 'end', 'must be a date'],
])('a bad spec (%o) names its field', (over, field, reason) => {
  const spec = { name: 'recsys-ab12', nodeType: 'gpu_rtx_6000', count: 1, end: hours(2), ...over };
  let err: unknown;
  try {
    leaseRequestBody(spec, now);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LeaseSpecError);
  expect((err as LeaseSpecError).field).toBe(field);
  expect((err as Error).message).toContain(reason);
});
