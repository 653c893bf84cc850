/**
 * The options every Temporal connection of the platform is opened with: `Connection.connect` (clients: the CLI,
 * activities that signal, tests, benchmarks) and `NativeConnection.connect` (workers). Built from the resolved profile
 * (lib/temporal-profile.ts) by `@temporalio/envconfig`'s own mapping, so mTLS (client certificate pair, server CA,
 * server name) and Temporal Cloud API keys (TLS on, `authorization: Bearer` metadata) mean here what they mean to
 * the SDKs. Certificate files are read here, when connecting, with errors that name the setting and the path.
 */
import fs from 'node:fs';
import type { ConnectionOptions } from '@temporalio/client';
import { toClientOptions, type ClientConfigTLS, type ConfigDataSource } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { config } from './config';
import type { TemporalProfile } from './temporal-profile';

/** The connection settings both kinds of connection share. */
export interface TemporalConnectionSettings {
  address: string;
  /** undefined or false: plain text (the local stack); true: TLS with the system's roots; else mTLS and/or a CA. */
  tls?: NonNullable<NativeConnectionOptions['tls']>;
  apiKey?: string;
  metadata?: Record<string, string>;
}

type TlsFile = 'clientCert' | 'clientKey' | 'serverCACert';
const SETTING: Record<TlsFile, string> = {
  clientCert: 'TLS client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH, or tls.client_cert_path of the profile)',
  clientKey: 'TLS client key (TEMPORAL_TLS_CLIENT_KEY_PATH, or tls.client_key_path of the profile)',
  serverCACert:
    'TLS server CA certificate (TEMPORAL_TLS_SERVER_CA_CERT_PATH, or tls.server_ca_cert_path of the profile)',
};

/** A certificate source with its file already read, so a missing or unreadable file is named with its setting. */
function readSource(
  which: TlsFile,
  source: ConfigDataSource | undefined,
  origin: string,
): ConfigDataSource | undefined {
  if (source === undefined || !('path' in source)) return source;
  try {
    return { data: fs.readFileSync(source.path) };
  } catch (err) {
    throw new Error(
      `Temporal ${SETTING[which]} ${JSON.stringify(source.path)} cannot be read (${origin}): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function readTls(tls: ClientConfigTLS, origin: string): ClientConfigTLS {
  // envconfig drops a certificate without its key (or the reverse) silently: the server would then refuse the
  // handshake with an error that names neither.
  if ((tls.clientCert === undefined) !== (tls.clientKey === undefined))
    throw new Error(
      `Temporal mTLS needs both a client certificate and its key (${origin}): ` +
        `${tls.clientCert === undefined ? SETTING.clientCert : SETTING.clientKey} is not set`,
    );
  return {
    ...tls,
    clientCert: readSource('clientCert', tls.clientCert, origin),
    clientKey: readSource('clientKey', tls.clientKey, origin),
    serverCACert: readSource('serverCACert', tls.serverCACert, origin),
  };
}

/** What to connect to and how, from a profile (default: the process's configuration). */
export function temporalConnectionSettings(profile: TemporalProfile = config().temporal): TemporalConnectionSettings {
  const { connectionOptions } = toClientOptions({
    address: profile.address,
    namespace: profile.namespace,
    apiKey: profile.apiKey,
    tls: profile.tls && readTls(profile.tls, profile.source),
    grpcMeta: profile.grpcMeta,
  });
  return {
    address: profile.address,
    ...(connectionOptions.tls !== undefined && connectionOptions.tls !== null && { tls: connectionOptions.tls }),
    ...(profile.apiKey !== undefined && { apiKey: profile.apiKey }),
    ...(profile.grpcMeta !== undefined && { metadata: { ...profile.grpcMeta } }),
  };
}

/** Options for `Connection.connect` (clients). Callers may add their own, e.g. `connectTimeout`. */
export function temporalConnectionOptions(profile?: TemporalProfile): ConnectionOptions {
  return temporalConnectionSettings(profile);
}

/** Options for `NativeConnection.connect` (workers). */
export function nativeConnectionOptions(profile?: TemporalProfile): NativeConnectionOptions {
  return temporalConnectionSettings(profile);
}
