/**
 * The provisioning path's own logic, without nodes: cluster ids and local subnets, the cluster spec's errors, PLAY
 * RECAP parsing, local lease records (idempotent by name, deletion of what is gone), and Chameleon's leases through
 * Blazar (a local server playing Keystone and Blazar: the saga's view of a lease, ensure idempotent by name).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localSubnetPrefix } from '../../../activities/provision';
import { parseRecap } from '../../../cluster/ansible';
import { ChameleonLeases } from '../../../cluster/chameleon-leases';
import { LocalLeases } from '../../../cluster/leases';
import { clusterPaths } from '../../../cluster/state';
import { wrapperCommand } from '../../../activities/cluster-run';
import { clusterIdOf, CLUSTER_ID } from '../../../lib/cluster-id';
import { parseClusterSpec } from '../../../lib/cluster-spec';
import { FakeChameleon, GOOD_ID, GOOD_SECRET } from '../lib/chameleon/fake-chameleon';

let tmp: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'recsys-provision-'));
});
afterEach(() => fs.rm(tmp, { recursive: true, force: true }));

test('a cluster id is short, interface-name safe and the same for the same owner', () => {
  const a = clusterIdOf('provision-train-m-d-20261201T000000Z');
  expect(a).toMatch(CLUSTER_ID);
  expect(clusterIdOf('provision-train-m-d-20261201T000000Z')).toBe(a);
  expect(clusterIdOf('provision-train-m-d-20261201T000001Z')).not.toBe(a);
  // rsb<id> and rsv<id>n<i> must fit Linux's 15-byte interface names.
  expect(`rsv${a}n9`.length).toBeLessThanOrEqual(15);
  expect(() => clusterPaths(tmp, 'Bad-Id')).toThrow(/cluster id must match/);
});

test('local clusters get a private /24 from their id, the same on every retry', () => {
  const ids = Array.from({ length: 200 }, (_, i) => clusterIdOf(`w${i}`));
  for (const id of ids) {
    const p = localSubnetPrefix(id);
    expect(p).toMatch(/^10\.23[1-8]\.\d{1,3}$/);
    expect(Number(p.split('.')[2])).toBeLessThan(250);
    expect(localSubnetPrefix(id)).toBe(p);
  }
  // Spread: 200 clusters land on many subnets, not a handful.
  expect(new Set(ids.map(localSubnetPrefix)).size).toBeGreaterThan(150);
});

test('the cluster spec names the field, and the value, that is wrong', () => {
  expect(parseClusterSpec({ target: 'local-cluster', nodes: 2, maxLeaseHours: 1 })).toEqual({
    target: 'local-cluster',
    nodes: 2,
    maxLeaseHours: 1,
  });
  expect(() => parseClusterSpec({ target: 'local-cluster', nodes: 9, maxLeaseHours: 1 })).toThrow(/nodes: .*value: 9/);
  expect(() => parseClusterSpec({ target: 'gke', nodes: 2, maxLeaseHours: 1 })).toThrow(/target: .*"gke"/);
  expect(() => parseClusterSpec({ target: 'chameleon', nodes: 2, maxLeaseHours: 1 })).toThrow(
    /chameleon: target chameleon needs/,
  );
  const kvm = { siteKind: 'kvm', nodeType: 'gpu_a100_pcie', cloud: 'c', keyPair: 'k' };
  expect(() => parseClusterSpec({ target: 'chameleon', nodes: 2, maxLeaseHours: 1, chameleon: kvm })).toThrow(
    /chameleon\.flavorId: siteKind kvm/,
  );
  expect(() =>
    parseClusterSpec({ target: 'local-cluster', nodes: 2, maxLeaseHours: 1, secret: 'x' }, '--target'),
  ).toThrow(/^--target: .*secret/);
});

test('PLAY RECAP is read per host; only the last recap counts', () => {
  const out = [
    'PLAY RECAP *********',
    'node0 : ok=1 changed=1 unreachable=0 failed=0 skipped=0',
    'TASK [x] ****',
    'PLAY RECAP *********************************************************************',
    'node0                      : ok=14   changed=3    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0',
    'node1                      : ok=9    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0',
  ].join('\n');
  expect(parseRecap(out)).toEqual({
    node0: { ok: 14, changed: 3, unreachable: 0, failed: 0 },
    node1: { ok: 9, changed: 0, unreachable: 1, failed: 0 },
  });
});

test("a node's wrapper command quotes every argument for the remote shell", () => {
  const cmd = wrapperCommand('/h/node 1', 2, 'k-1', ['--config-json', `{"a":"it's"}`, '--x']);
  expect(cmd).toBe(
    `NPROC_PER_NODE=2 RDZV_ID='k-1' '/h/node 1/bin/run-training.sh' '--config-json' '{"a":"it'\\''s"}' '--x'`,
  );
});

test('local lease records: ensure is idempotent by name, delete tolerates a lease that is gone', async () => {
  const leases = new LocalLeases(path.join(tmp, '.leases'));
  const endsAt = new Date('2030-01-01T00:00:00Z');
  const a = await leases.ensure({ name: 'recsys-aa', nodes: 2, endsAt });
  const again = await leases.ensure({ name: 'recsys-aa', nodes: 3, endsAt: new Date() });
  expect(again).toEqual(a);
  expect(a).toMatchObject({ status: 'ACTIVE', nodes: 2, endsAt: endsAt.toISOString() });
  await leases.ensure({ name: 'recsys-bb', nodes: 1, endsAt });
  expect((await leases.list('recsys-')).map((l) => l.name).sort()).toEqual(['recsys-aa', 'recsys-bb']);
  await leases.delete('recsys-aa');
  await leases.delete('recsys-aa');
  expect((await leases.list('recsys-')).map((l) => l.name)).toEqual(['recsys-bb']);
  await expect(leases.waitActive('recsys-aa')).rejects.toThrow(/does not exist/);
});

describe("Chameleon's leases through Blazar", () => {
  let fake: FakeChameleon;
  beforeAll(async () => {
    fake = await new FakeChameleon().start();
  });
  afterAll(() => fake.close());

  test('ensure creates one physical:host lease per name; waitActive gives the reservation id; list and delete', async () => {
    const file = path.join(tmp, 'clouds.yaml');
    await fs.writeFile(
      file,
      [
        'clouds:',
        '  chi:',
        '    auth_type: v3applicationcredential',
        '    auth:',
        `      auth_url: ${fake.url}/identity/v3`,
        `      application_credential_id: ${GOOD_ID}`,
        `      application_credential_secret: ${GOOD_SECRET}`,
        '    region_name: CHI@TACC',
        '    interface: public',
        '',
      ].join('\n'),
    );
    const saved = process.env.OS_CLIENT_CONFIG_FILE;
    process.env.OS_CLIENT_CONFIG_FILE = file;
    try {
      const leases = new ChameleonLeases(
        { siteKind: 'baremetal', nodeType: 'gpu_rtx_6000', cloud: 'chi', keyPair: 'k' },
        6,
        20,
      );
      const endsAt = new Date(Date.now() + 2 * 3_600_000);
      const a = await leases.ensure({ name: 'recsys-ab12cd34', nodes: 2, endsAt });
      const b = await leases.ensure({ name: 'recsys-ab12cd34', nodes: 2, endsAt });
      expect(b.id).toBe(a.id);
      expect(fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/leases'))).toHaveLength(1);
      fake.leases.get(a.id)!.script = ['PENDING', 'STARTING', 'ACTIVE'];
      const polled: string[] = [];
      const active = await leases.waitActive(a.id, { onPoll: (s) => polled.push(s) });
      expect(polled).toEqual(['PENDING', 'STARTING', 'ACTIVE']);
      expect(active.status).toBe('ACTIVE');
      expect(active.reservationId).toBeDefined();
      expect(active.reservationId).not.toBe(a.id);
      expect(active.nodes).toBe(2);
      expect((await leases.list('recsys-')).map((l) => l.id)).toEqual([a.id]);
      await leases.delete(a.id);
      await leases.delete(a.id);
      expect(await leases.list('recsys-')).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.OS_CLIENT_CONFIG_FILE;
      else process.env.OS_CLIENT_CONFIG_FILE = saved;
    }
  });
});
