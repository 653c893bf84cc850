/**
 * Which Temporal cluster to use and how to authenticate to it, resolved the way Temporal's SDKs and CLI do it
 * (`@temporalio/envconfig`): a profile of a TOML file (TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml;
 * TEMPORAL_PROFILE, else `default`) overridden by TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
 * TEMPORAL_TLS*, TEMPORAL_GRPC_META_*. One file configures workers, replicas, the CLI and the `temporal` CLI alike.
 * With nothing set the local stack's server is used: 127.0.0.1:7233, namespace `default`, no TLS.
 * Certificates are not read here (only their paths): lib/temporal-connection.ts reads them when connecting.
 */
import fs from 'node:fs';
import { loadClientConfigProfile, type ClientConfigProfile, type ClientConfigTLS } from '@temporalio/envconfig';

export const LOCAL_TEMPORAL_ADDRESS = '127.0.0.1:7233';
export const LOCAL_TEMPORAL_NAMESPACE = 'default';

export interface TemporalProfile {
  /** host:port of the frontend (Temporal Cloud: `<namespace>.<account>.tmprl.cloud:7233` or a regional API host). */
  address: string;
  namespace: string;
  apiKey?: string;
  /** Server CA, client certificate pair (mTLS), server name; `disabled: true` forces plain text. */
  tls?: ClientConfigTLS;
  /** Extra gRPC headers on every call. */
  grpcMeta?: Record<string, string>;
  /** Where the settings came from, for error messages: the profile and file, or the environment alone. */
  source: string;
}

/**
 * The environment as envconfig reads it. An empty variable counts as unset (as everywhere in lib/config.ts), except
 * TEMPORAL_GRPC_META_*, where envconfig reads an empty value as "remove this header of the profile".
 */
function envconfigEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env))
    if (value !== undefined && (value !== '' || key.startsWith('TEMPORAL_GRPC_META_'))) out[key] = value;
  return out;
}

/** The Temporal profile from the environment (and the TOML file it names); errors name the variable and value. */
export function loadTemporalProfile(env: NodeJS.ProcessEnv = process.env): TemporalProfile {
  const vars = envconfigEnv(env);
  const file = vars.TEMPORAL_CONFIG_FILE;
  // envconfig skips a missing file silently (right for the default path); one asked for by name must exist.
  if (file !== undefined && !fs.existsSync(file))
    throw new Error(
      `environment variable TEMPORAL_CONFIG_FILE names a file that does not exist: ${JSON.stringify(file)}`,
    );
  const profileName = vars.TEMPORAL_PROFILE;
  let profile: ClientConfigProfile;
  try {
    profile = loadClientConfigProfile({ overrideEnvVars: vars });
  } catch (err) {
    const where = file !== undefined ? `TEMPORAL_CONFIG_FILE ${JSON.stringify(file)}` : 'the Temporal config file';
    const message = (err as Error).message;
    // envconfig's own message names neither the variable nor the file.
    if (profileName !== undefined && /not found/i.test(message)) {
      const which = `environment variable TEMPORAL_PROFILE=${JSON.stringify(profileName)}`;
      throw new Error(`${which}: no such profile in ${where}`, { cause: err });
    }
    throw new Error(`cannot load the Temporal client configuration from ${where}: ${message}`, { cause: err });
  }
  const address = profile.address ?? LOCAL_TEMPORAL_ADDRESS;
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+)(:\d{1,5})?$/.test(address))
    throw new Error(
      `Temporal address must be host:port (TEMPORAL_ADDRESS or the profile's address), got ${JSON.stringify(address)}`,
    );
  return {
    address,
    namespace: profile.namespace ?? LOCAL_TEMPORAL_NAMESPACE,
    ...(profile.apiKey !== undefined && { apiKey: profile.apiKey }),
    ...(profile.tls !== undefined && { tls: profile.tls }),
    ...(profile.grpcMeta !== undefined && { grpcMeta: profile.grpcMeta }),
    source:
      `profile ${JSON.stringify(profileName ?? 'default')} of ` +
      `${file !== undefined ? JSON.stringify(file) : 'the default Temporal config file (if any)'} and TEMPORAL_* variables`,
  };
}
