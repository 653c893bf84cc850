/**
 * The Keystone session against a local server playing Keystone: the application-credential token request, the token
 * reused until shortly before it expires, the Blazar endpoint picked from the catalog by region and interface, and
 * errors that name the request but not the secret.
 */
import type { CloudConfig } from '../../../../lib/chameleon/clouds-yaml';
import { ChameleonHttpError } from '../../../../lib/chameleon/http';
import { identityBase, KeystoneSession, tokenRequestBody } from '../../../../lib/chameleon/keystone';
import { Secret } from '../../../../lib/chameleon/secret';
import { FakeChameleon, GOOD_ID, GOOD_SECRET, SITES } from './fake-chameleon';

let fake: FakeChameleon;
beforeAll(async () => {
  fake = await new FakeChameleon().start();
});
afterAll(() => fake.close());
beforeEach(() => {
  fake.requests.length = 0;
  fake.tokenLifetimeMs = 3_600_000;
});

const cloud = (over: Partial<CloudConfig> = {}): CloudConfig => ({
  cloud: 'openstack',
  file: '/home/u/.config/openstack/clouds.yaml',
  authUrl: `${fake.url}/identity`,
  auth: { type: 'v3applicationcredential', id: GOOD_ID, secret: new Secret(GOOD_SECRET) },
  regionName: 'CHI@TACC',
  interface: 'public',
  ...over,
});

test('the token request is an application credential, and the token is X-Subject-Token', async () => {
  const session = new KeystoneSession(cloud());
  const token = await session.token();
  expect(token).toBe(`gAAAAA-token-${fake.tokensIssued}`);
  expect(fake.requests).toHaveLength(1);
  const req = fake.requests[0]!;
  expect(req.method).toBe('POST');
  expect(req.path).toBe('/identity/v3/auth/tokens');
  expect(req.headers['content-type']).toBe('application/json');
  expect(req.body).toEqual({
    auth: {
      identity: {
        methods: ['application_credential'],
        application_credential: { id: GOOD_ID, secret: GOOD_SECRET },
      },
    },
  });
});

test('auth_url with or without /v3 reaches the same place', () => {
  expect(identityBase('https://chi.tacc.chameleoncloud.org:5000')).toBe('https://chi.tacc.chameleoncloud.org:5000/v3');
  expect(identityBase('https://chi.tacc.chameleoncloud.org:5000/v3/')).toBe(
    'https://chi.tacc.chameleoncloud.org:5000/v3',
  );
});

test('a password credential is scoped to its project', () => {
  expect(
    tokenRequestBody({
      type: 'password',
      user: { name: 'alice', domainName: 'Default' },
      password: new Secret('pw'),
      project: { id: 'p1' },
    }),
  ).toEqual({
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: 'alice', domain: { name: 'Default' }, password: 'pw' } },
      },
      scope: { project: { id: 'p1' } },
    },
  });
});

test('the token is reused until shortly before it expires, and concurrent callers share one request', async () => {
  let now = Date.now();
  const session = new KeystoneSession(cloud(), { now: () => now, refreshMarginMs: 5 * 60_000 });
  const [a, b] = await Promise.all([session.token(), session.token()]);
  expect(a).toBe(b);
  now += 50 * 60_000; // 10 min left of the hour: still good
  expect(await session.token()).toBe(a);
  expect(fake.requests).toHaveLength(1);
  now += 6 * 60_000; // 4 min left: inside the margin
  expect(await session.token()).not.toBe(a);
  expect(fake.requests).toHaveLength(2);
});

test('the reservation endpoint is the one of the region and interface', async () => {
  const tacc = new KeystoneSession(cloud());
  expect(await tacc.endpoint('reservation')).toBe(`${fake.url}${SITES.tacc}/`);
  const internal = new KeystoneSession(cloud({ interface: 'internal' }));
  expect(await internal.endpoint('reservation')).toBe(`${fake.url}${SITES.taccInternal}/v1`);
  const uc = new KeystoneSession(cloud({ regionName: 'CHI@UC' }));
  expect(await uc.endpoint('reservation')).toBe(`${fake.url}${SITES.uc}/v1`);
});

test('no region in clouds.yaml and several regions in the catalog asks for one', async () => {
  const session = new KeystoneSession({ ...cloud(), regionName: undefined });
  await expect(session.endpoint('reservation')).rejects.toThrow(
    "'reservation' has public endpoints in several regions (CHI@UC, CHI@TACC): set region_name in clouds.yaml",
  );
});

test('a region the catalog does not have lists what it offers', async () => {
  const session = new KeystoneSession(cloud({ regionName: 'KVM@TACC' }));
  await expect(session.endpoint('reservation')).rejects.toThrow(
    'no \'reservation\' endpoint for region "KVM@TACC" and interface public (offered: CHI@UC/public, CHI@TACC/public, CHI@TACC/internal)',
  );
  await expect(session.endpoint('object-store')).rejects.toThrow(
    "the service catalog has no 'object-store' service (types: compute, reservation)",
  );
});

test('a rejected credential names the request and Keystone message, not the secret', async () => {
  const session = new KeystoneSession(
    cloud({ auth: { type: 'v3applicationcredential', id: GOOD_ID, secret: new Secret('wrong-secret-123') } }),
  );
  const err = (await session.token().catch((e: unknown) => e)) as ChameleonHttpError;
  expect(err).toBeInstanceOf(ChameleonHttpError);
  expect(err.status).toBe(401);
  expect(err.message).toBe(
    `Keystone POST ${new URL(fake.url).host}/identity/v3/auth/tokens: HTTP 401: The request you have made requires authentication.`,
  );
  expect(err.message).not.toContain('wrong-secret-123');
});
