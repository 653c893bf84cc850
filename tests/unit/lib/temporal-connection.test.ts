/**
 * Temporal connection settings (lib/temporal-profile.ts, lib/temporal-connection.ts) reach the connection they
 * configure: each setting as the options `Connection.connect` / `NativeConnection.connect` get, and through a real
 * client `Connection` to a local gRPC server started here (127.0.0.1, TLS with certificates made by openssl, client
 * certificates required) that records what the client presented: its certificate, the API key's authorization header,
 * the gRPC metadata. Not a Temporal server: it answers only the call Connection.connect makes (GetSystemInfo).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Connection } from '@temporalio/client';
import { loadConfig } from '../../../lib/config';
import {
  nativeConnectionOptions,
  temporalConnectionOptions,
  temporalConnectionSettings,
} from '../../../lib/temporal-connection';
import { loadTemporalProfile } from '../../../lib/temporal-profile';

const SERVER_NAME = 'temporal.recsys.test';
let dir: string;
/** A HOME without ~/.config/temporalio/temporal.toml, so the machine's own file cannot leak into a test. */
let home: string;
const file = (name: string) => path.join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, a server certificate for SERVER_NAME and a client certificate, both signed by the CA (P-256: fast). */
function makeCertificates(): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=recsys-test-ca');
  fs.writeFileSync(file('server.ext'), `subjectAltName=DNS:${SERVER_NAME}\n`);
  for (const [name, serial] of [
    ['server', '1'],
    ['client', '2'],
  ] as const) {
    const cn = name === 'server' ? SERVER_NAME : 'recsys-worker';
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    const ext = name === 'server' ? ['-extfile', 'server.ext'] : [];
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-set_serial',
      serial,
      '-days',
      '1',
      '-out',
      `${name}.crt`,
      ...ext,
    );
  }
}

/** What the server saw of one call. */
interface Seen {
  clientCertCN: string | undefined;
  authorization: string | undefined;
  metadata: Record<string, string>;
}
const seen: Seen[] = [];
let server: grpc.Server;
let address: string;

/** Answers GetSystemInfo with an empty response (valid protobuf: no capabilities) and records the call. */
const systemInfo: grpc.ServiceDefinition = {
  getSystemInfo: {
    path: '/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recsys-temporal-conn-'));
  home = path.join(dir, 'home');
  fs.mkdirSync(home);
  makeCertificates();
  server = new grpc.Server();
  server.addService(systemInfo, {
    getSystemInfo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const md = call.metadata.getMap();
      seen.push({
        clientCertCN: call.getAuthContext().sslPeerCertificate?.subject?.CN,
        authorization: md.authorization as string | undefined,
        metadata: Object.fromEntries(Object.entries(md).map(([k, v]) => [k, String(v)])),
      });
      callback(null, Buffer.alloc(0));
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    fs.readFileSync(file('ca.crt')),
    [{ private_key: fs.readFileSync(file('server.key')), cert_chain: fs.readFileSync(file('server.crt')) }],
    true, // mTLS: a client without a certificate signed by the CA is refused
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
});

/** Connects a real client Connection with the options built from `env`, then closes it. */
async function connectWith(env: NodeJS.ProcessEnv, connectTimeout = 5_000): Promise<void> {
  const conn = await Connection.connect({ ...temporalConnectionOptions(loadTemporalProfile(env)), connectTimeout });
  await conn.close();
}

const mtlsEnv = (): NodeJS.ProcessEnv => ({
  HOME: home,
  TEMPORAL_ADDRESS: address,
  TEMPORAL_TLS_CLIENT_CERT_PATH: file('client.crt'),
  TEMPORAL_TLS_CLIENT_KEY_PATH: file('client.key'),
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: file('ca.crt'),
  TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
});

describe('nothing set: the local stack', () => {
  test('127.0.0.1:7233, namespace default, plain text, no credentials, for clients and workers alike', () => {
    const profile = loadTemporalProfile({ HOME: home });
    expect(profile).toMatchObject({ address: '127.0.0.1:7233', namespace: 'default' });
    expect(temporalConnectionOptions(profile)).toEqual({ address: '127.0.0.1:7233' });
    expect(nativeConnectionOptions(profile)).toEqual({ address: '127.0.0.1:7233' });
    const cfg = loadConfig({ HOME: home });
    expect([cfg.temporalAddress, cfg.temporalNamespace]).toEqual(['127.0.0.1:7233', 'default']);
  });

  test('empty variables count as unset, as for every other setting', () => {
    const profile = loadTemporalProfile({
      HOME: home,
      TEMPORAL_ADDRESS: '',
      TEMPORAL_NAMESPACE: '',
      TEMPORAL_API_KEY: '',
    });
    expect(temporalConnectionSettings(profile)).toEqual({ address: '127.0.0.1:7233' });
    expect(profile.namespace).toBe('default');
  });
});

describe('mTLS (self-hosted cluster)', () => {
  test('certificate, key and CA paths become the tls fields of both kinds of connection options', () => {
    const profile = loadTemporalProfile(mtlsEnv());
    const expected = {
      address,
      tls: {
        serverNameOverride: SERVER_NAME,
        serverRootCACertificate: new Uint8Array(fs.readFileSync(file('ca.crt'))),
        clientCertPair: {
          crt: new Uint8Array(fs.readFileSync(file('client.crt'))),
          key: new Uint8Array(fs.readFileSync(file('client.key'))),
        },
      },
    };
    expect(temporalConnectionOptions(profile)).toEqual(expected);
    expect(nativeConnectionOptions(profile)).toEqual(expected);
  });

  test('a server that requires a client certificate accepts the configured one', async () => {
    await connectWith(mtlsEnv());
    expect(seen).toHaveLength(1);
    expect(seen[0]!.clientCertCN).toBe('recsys-worker');
    expect(seen[0]!.authorization).toBeUndefined();
  });

  test('without the client certificate the same server refuses the connection', async () => {
    const env = mtlsEnv();
    delete env.TEMPORAL_TLS_CLIENT_CERT_PATH;
    delete env.TEMPORAL_TLS_CLIENT_KEY_PATH;
    // The handshake fails and gRPC keeps retrying until the deadline.
    await expect(connectWith(env, 1_000)).rejects.toThrow();
    expect(seen).toHaveLength(0);
  });

  test('a certificate without its key, or an unreadable file, is an error naming the setting and the path', () => {
    const env = mtlsEnv();
    delete env.TEMPORAL_TLS_CLIENT_KEY_PATH;
    expect(() => temporalConnectionOptions(loadTemporalProfile(env))).toThrow(
      /TEMPORAL_TLS_CLIENT_KEY_PATH.* is not set/,
    );
    const missing = file('nope.crt');
    expect(() =>
      temporalConnectionOptions(loadTemporalProfile({ ...mtlsEnv(), TEMPORAL_TLS_SERVER_CA_CERT_PATH: missing })),
    ).toThrow(
      `TEMPORAL_TLS_SERVER_CA_CERT_PATH, or tls.server_ca_cert_path of the profile) "${missing}" cannot be read`,
    );
  });
});

describe('API key (Temporal Cloud)', () => {
  test('the key turns TLS on and is in the options of both kinds of connection', () => {
    const profile = loadTemporalProfile({
      HOME: home,
      TEMPORAL_ADDRESS: 'eu-west-1.aws.api.temporal.io:7233',
      TEMPORAL_API_KEY: 'k-123',
    });
    expect(temporalConnectionOptions(profile)).toEqual({
      address: 'eu-west-1.aws.api.temporal.io:7233',
      tls: true,
      apiKey: 'k-123',
    });
    expect(nativeConnectionOptions(profile)).toEqual(temporalConnectionOptions(profile));
  });

  test('the server receives it as `authorization: Bearer <key>`, with the gRPC metadata of TEMPORAL_GRPC_META_*', async () => {
    await connectWith({ ...mtlsEnv(), TEMPORAL_API_KEY: 'k-123', TEMPORAL_GRPC_META_X_TENANT: 'recsys' });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.authorization).toBe('Bearer k-123');
    expect(seen[0]!.metadata['x-tenant']).toBe('recsys');
  });
});

describe('profiles in a TOML file', () => {
  const writeToml = (): string => {
    const toml = file('temporal.toml');
    fs.writeFileSync(
      toml,
      [
        '[profile.default]',
        'address = "127.0.0.1:7233"',
        '',
        '[profile.prod]',
        `address = "${address}"`,
        'namespace = "recsys-prod"',
        '[profile.prod.tls]',
        `client_cert_path = "${file('client.crt')}"`,
        `client_key_path = "${file('client.key')}"`,
        `server_ca_cert_path = "${file('ca.crt')}"`,
        `server_name = "${SERVER_NAME}"`,
        '',
      ].join('\n'),
    );
    return toml;
  };

  test('TEMPORAL_PROFILE selects address, namespace and TLS; the connection reaches that cluster', async () => {
    const env = { HOME: home, TEMPORAL_CONFIG_FILE: writeToml(), TEMPORAL_PROFILE: 'prod' };
    const cfg = loadConfig(env);
    expect([cfg.temporalAddress, cfg.temporalNamespace]).toEqual([address, 'recsys-prod']);
    await connectWith(env);
    expect(seen.map((s) => s.clientCertCN)).toEqual(['recsys-worker']);
  });

  test('variables override the profile', () => {
    const env = {
      HOME: home,
      TEMPORAL_CONFIG_FILE: writeToml(),
      TEMPORAL_PROFILE: 'prod',
      TEMPORAL_NAMESPACE: 'other',
    };
    expect(loadTemporalProfile(env)).toMatchObject({ address, namespace: 'other' });
  });

  test('the default profile of the default file (~/.config/temporalio/temporal.toml) applies without variables', () => {
    const xdg = path.join(dir, 'xdg');
    fs.mkdirSync(path.join(xdg, 'temporalio'), { recursive: true });
    fs.writeFileSync(path.join(xdg, 'temporalio', 'temporal.toml'), '[profile.default]\nnamespace = "from-file"\n');
    expect(loadTemporalProfile({ HOME: home, XDG_CONFIG_HOME: xdg })).toMatchObject({
      address: '127.0.0.1:7233',
      namespace: 'from-file',
    });
  });

  test('an unknown profile, a missing file or a bad address is an error naming the variable and value', () => {
    const toml = writeToml();
    expect(() => loadTemporalProfile({ HOME: home, TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'staging' })).toThrow(
      `TEMPORAL_PROFILE="staging": no such profile in TEMPORAL_CONFIG_FILE "${toml}"`,
    );
    const missing = file('absent.toml');
    expect(() => loadTemporalProfile({ HOME: home, TEMPORAL_CONFIG_FILE: missing })).toThrow(
      `TEMPORAL_CONFIG_FILE names a file that does not exist: "${missing}"`,
    );
    expect(() => loadTemporalProfile({ HOME: home, TEMPORAL_ADDRESS: 'http://temporal:7233' })).toThrow(
      'Temporal address must be host:port (TEMPORAL_ADDRESS or the profile\'s address), got "http://temporal:7233"',
    );
  });
});
