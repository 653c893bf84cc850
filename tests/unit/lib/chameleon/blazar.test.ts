/**
 * The Blazar client against a local server playing Keystone and Blazar: the exact lease body at the region's endpoint
 * with the Keystone token, creation idempotent by name, waiting PENDING → STARTING → ACTIVE for the reservation ids,
 * failing clearly on ERROR, deletion tolerating 404, and Blazar's messages in errors.
 */
import { BlazarClient, LeaseFailedError, LeaseTimeoutError, type Lease } from '../../../../lib/chameleon/blazar';
import type { CloudConfig } from '../../../../lib/chameleon/clouds-yaml';
import { ChameleonHttpError } from '../../../../lib/chameleon/http';
import { KeystoneSession } from '../../../../lib/chameleon/keystone';
import { LeaseSpecError, type LeaseSpec } from '../../../../lib/chameleon/lease-request';
import { Secret } from '../../../../lib/chameleon/secret';
import { FakeChameleon, GOOD_ID, GOOD_SECRET, SITES } from './fake-chameleon';

let fake: FakeChameleon;
beforeAll(async () => {
  fake = await new FakeChameleon().start();
});
afterAll(() => fake.close());
beforeEach(() => {
  fake.requests.length = 0;
  fake.leases.clear();
  fake.failNextCreate = undefined;
});

const cloud = (): CloudConfig => ({
  cloud: 'openstack',
  file: '/home/u/.config/openstack/clouds.yaml',
  authUrl: `${fake.url}/identity/v3`,
  auth: { type: 'v3applicationcredential', id: GOOD_ID, secret: new Secret(GOOD_SECRET) },
  regionName: 'CHI@TACC',
  interface: 'public',
});
const client = () => new BlazarClient(new KeystoneSession(cloud()));
const now = new Date('2030-01-01T09:59:10Z');
const spec = (over: Partial<LeaseSpec> = {}): LeaseSpec => ({
  name: 'recsys-ab12cd34',
  nodeType: 'gpu_rtx_6000',
  count: 2,
  end: new Date('2030-01-01T13:59:40Z'),
  ...over,
});

describe('createLease', () => {
  test("posts python-chi's body to the region's Blazar with the Keystone token", async () => {
    const { lease, created } = await client().createLease(spec(), { now });
    expect(created).toBe(true);
    const posts = fake.blazarRequests().filter((r) => r.method === 'POST');
    expect(posts).toHaveLength(1);
    const post = posts[0]!;
    // CHI@TACC's public endpoint, registered without /v1.
    expect(post.path).toBe(`${SITES.tacc}/v1/leases`);
    expect(fake.validTokens.has(String(post.headers['x-auth-token']))).toBe(true);
    expect(post.body).toEqual({
      name: 'recsys-ab12cd34',
      start_date: 'now',
      end_date: '2030-01-01 13:59',
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
    expect(lease).toMatchObject({ name: 'recsys-ab12cd34', status: 'PENDING' });
    expect(lease.reservations).toEqual([
      expect.objectContaining({ resource_type: 'physical:host', status: 'pending', min: 2, max: 2 }),
    ]);
  });

  test('is idempotent by name: the second call returns the first lease and posts nothing', async () => {
    const c = client();
    const first = await c.createLease(spec(), { now });
    const second = await c.createLease(spec(), { now });
    expect(second).toEqual({ lease: first.lease, created: false });
    expect(fake.blazarRequests().filter((r) => r.method === 'POST')).toHaveLength(1);
    expect(fake.leases.size).toBe(1);
    // A fresh client (a retried activity on another worker) finds it too.
    expect((await client().createLease(spec(), { now })).lease.id).toBe(first.lease.id);
  });

  test('an ended lease of the same name does not count; one in ERROR or holding other hosts is refused', async () => {
    fake.addLease({ name: 'recsys-ab12cd34', status: 'TERMINATED' });
    expect((await client().createLease(spec(), { now })).created).toBe(true);

    fake.leases.clear();
    const broken = fake.addLease({ name: 'recsys-ab12cd34', status: 'ERROR' });
    await expect(client().createLease(spec(), { now })).rejects.toThrow(
      `lease "recsys-ab12cd34" (${broken.id}) exists in status ERROR: delete it before creating it again`,
    );

    fake.leases.clear();
    fake.addLease({
      name: 'recsys-ab12cd34',
      reservations: [
        {
          id: 'r1',
          resource_type: 'physical:host',
          status: 'active',
          min: 2,
          max: 2,
          resource_properties: '["=", "$node_type", "gpu_v100"]',
        },
      ],
    });
    await expect(client().createLease(spec(), { now })).rejects.toThrow(
      /does not match the request: its resource_properties are .*gpu_v100.*, not node type gpu_rtx_6000/,
    );
    expect(fake.blazarRequests().filter((r) => r.method === 'POST')).toHaveLength(1);
  });

  test('a lease beyond the maximum duration never reaches Blazar', async () => {
    await expect(
      client().createLease(spec({ end: new Date('2030-01-01T15:00:00Z'), maxHours: 4 }), { now }),
    ).rejects.toBeInstanceOf(LeaseSpecError);
    expect(fake.requests).toHaveLength(0);
  });

  test("Blazar's refusal names the method, the path and Blazar's message", async () => {
    fake.failNextCreate = {
      status: 400,
      body: { error_code: 400, error_message: 'Not enough hosts available', error_name: 'NotEnoughHostsAvailable' },
    };
    const err = (await client()
      .createLease(spec(), { now })
      .catch((e: unknown) => e)) as ChameleonHttpError;
    expect(err).toBeInstanceOf(ChameleonHttpError);
    expect(err.message).toBe(
      `Blazar POST ${new URL(fake.url).host}${SITES.tacc}/v1/leases: HTTP 400: Not enough hosts available`,
    );
    expect(err.message).not.toContain(GOOD_SECRET);
  });

  test('a revoked token is renewed once and the call goes through', async () => {
    const c = client();
    await c.listLeases();
    fake.validTokens.clear();
    const issued = fake.tokensIssued;
    expect((await c.createLease(spec(), { now })).created).toBe(true);
    expect(fake.tokensIssued).toBe(issued + 1);
  });
});

describe('waitUntilActive', () => {
  test('polls PENDING → STARTING → ACTIVE and returns the reservation ids, not the lease id', async () => {
    const { lease } = await client().createLease(spec(), { now });
    fake.leases.get(lease.id)!.script = ['PENDING', 'STARTING', 'ACTIVE'];
    const seen: string[] = [];
    const result = await client().waitUntilActive(lease.id, {
      intervalMs: 5,
      onPoll: (l: Lease) => seen.push(l.status),
    });
    expect(seen).toEqual(['PENDING', 'STARTING', 'ACTIVE']);
    expect(result.lease.status).toBe('ACTIVE');
    expect(result.reservationIds).toEqual([lease.reservations[0]!.id]);
    expect(result.reservationIds).not.toContain(lease.id);
  });

  test('fails clearly when the lease goes to ERROR', async () => {
    const { lease } = await client().createLease(spec(), { now });
    fake.leases.get(lease.id)!.script = ['PENDING', 'STARTING', 'ERROR'];
    const err = (await client()
      .waitUntilActive(lease.id, { intervalMs: 5 })
      .catch((e: unknown) => e)) as LeaseFailedError;
    expect(err).toBeInstanceOf(LeaseFailedError);
    expect(err.status).toBe('ERROR');
    expect(err.message).toBe(
      `lease "recsys-ab12cd34" (${lease.id}) went to ERROR instead of ACTIVE (reservations: ${lease.reservations[0]!.id} pending)`,
    );
  });

  test('fails on a TERMINATED or deleted lease, and at the deadline', async () => {
    const ended = fake.addLease({ name: 'recsys-old', status: 'TERMINATED' });
    await expect(client().waitUntilActive(ended.id, { intervalMs: 5 })).rejects.toThrow('went to TERMINATED');
    await expect(client().waitUntilActive('no-such-lease', { intervalMs: 5 })).rejects.toThrow(
      'lease no-such-lease no longer exists',
    );
    const pending = fake.addLease({ name: 'recsys-slow', status: 'PENDING' });
    const err = await client()
      .waitUntilActive(pending.id, { intervalMs: 20, timeoutMs: 50 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseTimeoutError);
    expect((err as Error).message).toMatch(/lease "recsys-slow" .* is still PENDING after \d+ s/);
  });

  test('stops when its signal is aborted', async () => {
    const pending = fake.addLease({ name: 'recsys-slow', status: 'PENDING' });
    const ac = new AbortController();
    const wait = client().waitUntilActive(pending.id, {
      intervalMs: 10_000,
      signal: ac.signal,
      onPoll: () => ac.abort(new Error('cancelled')),
    });
    await expect(wait).rejects.toThrow('cancelled');
  });
});

describe('listing and deleting', () => {
  test('listLeases filters by name prefix', async () => {
    fake.addLease({ name: 'recsys-aaaa' });
    fake.addLease({ name: 'recsys-bbbb' });
    fake.addLease({ name: 'someone-elses' });
    expect((await client().listLeases('recsys-')).map((l) => l.name).sort()).toEqual(['recsys-aaaa', 'recsys-bbbb']);
    expect(await client().listLeases()).toHaveLength(3);
  });

  test('deleteLease deletes, and a lease already gone (404) is fine', async () => {
    const lease = fake.addLease({ name: 'recsys-aaaa' });
    expect(await client().deleteLease(lease.id)).toBe('deleted');
    expect(fake.leases.has(lease.id)).toBe(false);
    expect(await client().deleteLease(lease.id)).toBe('absent');
    const deletes = fake.blazarRequests().filter((r) => r.method === 'DELETE');
    expect(deletes.map((r) => r.path)).toEqual([
      `${SITES.tacc}/v1/leases/${lease.id}`,
      `${SITES.tacc}/v1/leases/${lease.id}`,
    ]);
  });

  test('deleteLeasesByName removes every record of that name, whatever its status', async () => {
    const a = fake.addLease({ name: 'recsys-aaaa', status: 'ACTIVE' });
    const b = fake.addLease({ name: 'recsys-aaaa', status: 'TERMINATED' });
    const other = fake.addLease({ name: 'recsys-bbbb' });
    expect((await client().deleteLeasesByName('recsys-aaaa')).sort()).toEqual([a.id, b.id].sort());
    expect([...fake.leases.keys()]).toEqual([other.id]);
  });

  test('other errors are not swallowed: a token still refused after one renewal surfaces', async () => {
    let invalidated = 0;
    const c = new BlazarClient({
      token: () => Promise.resolve('not-a-token'),
      endpoint: () => Promise.resolve(`${fake.url}${SITES.uc}/v1`),
      invalidate: () => void invalidated++,
    });
    const err = (await c.deleteLease('x').catch((e: unknown) => e)) as ChameleonHttpError;
    expect(err).toBeInstanceOf(ChameleonHttpError);
    expect(err.status).toBe(401);
    expect(err.message).toContain(`Blazar DELETE ${new URL(fake.url).host}${SITES.uc}/v1/leases/x: HTTP 401`);
    expect(invalidated).toBe(1);
    expect(fake.blazarRequests()).toHaveLength(2);
  });
});
