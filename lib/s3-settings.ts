/**
 * Where the object store is and which credentials sign for it, from the environment. Two modes:
 * - a custom endpoint (RECSYS_S3_ENDPOINT=<http(s) URL>; unset means the local versitygw, http://127.0.0.1:7070):
 *   path-style addressing (`<endpoint>/<bucket>/<key>`, what S3-compatible stores serve), static keys from
 *   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default: the local stack's), region AWS_REGION (default us-east-1);
 * - RECSYS_S3_ENDPOINT=aws: the AWS SDK resolves everything itself, as for any AWS program: the endpoint from the
 *   region (or AWS_ENDPOINT_URL_S3), virtual-hosted addressing (`https://<bucket>.s3.<region>.amazonaws.com/<key>`),
 *   the region from AWS_REGION or the shared config file, and, unless AWS_ACCESS_KEY_ID is set, the default
 *   credential chain (SSO, shared files, web identity, container and instance roles).
 */

/** The value of RECSYS_S3_ENDPOINT that hands endpoint, region and credentials to the AWS SDK. */
export const AWS_SDK_ENDPOINT = 'aws';
export const LOCAL_S3_ENDPOINT = 'http://127.0.0.1:7070';
const LOCAL_REGION = 'us-east-1';
const LOCAL_ACCESS_KEY_ID = 'recsys';
const LOCAL_SECRET_ACCESS_KEY = 'recsys-local-secret';

export interface S3StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3Settings {
  /** The custom endpoint URL; undefined when the AWS SDK resolves it (RECSYS_S3_ENDPOINT=aws). */
  endpoint: string | undefined;
  /** undefined: the SDK's own region resolution. */
  region: string | undefined;
  /** Path-style addressing: only for a custom endpoint. */
  forcePathStyle: boolean;
  /** undefined: the SDK's default credential chain. */
  credentials: S3StaticCredentials | undefined;
}

const set = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
};

function staticCredentials(env: NodeJS.ProcessEnv, fallback?: S3StaticCredentials): S3StaticCredentials | undefined {
  const accessKeyId = set(env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = set(env, 'AWS_SECRET_ACCESS_KEY');
  if (accessKeyId === undefined && secretAccessKey === undefined) return fallback;
  if (accessKeyId === undefined || secretAccessKey === undefined)
    throw new Error(
      `environment variable ${accessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is not set ` +
        `but ${accessKeyId === undefined ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID'} is: set both, or neither`,
    );
  const sessionToken = set(env, 'AWS_SESSION_TOKEN');
  return { accessKeyId, secretAccessKey, ...(sessionToken !== undefined && { sessionToken }) };
}

export function loadS3Settings(env: NodeJS.ProcessEnv = process.env): S3Settings {
  const raw = set(env, 'RECSYS_S3_ENDPOINT') ?? LOCAL_S3_ENDPOINT;
  if (raw === AWS_SDK_ENDPOINT)
    return {
      endpoint: undefined,
      region: set(env, 'AWS_REGION'),
      forcePathStyle: false,
      credentials: staticCredentials(env),
    };
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    throw new Error(
      `environment variable RECSYS_S3_ENDPOINT must be an http(s) URL or '${AWS_SDK_ENDPOINT}', got ${JSON.stringify(raw)}`,
    );
  return {
    endpoint: raw,
    region: set(env, 'AWS_REGION') ?? LOCAL_REGION,
    forcePathStyle: true,
    credentials: staticCredentials(env, { accessKeyId: LOCAL_ACCESS_KEY_ID, secretAccessKey: LOCAL_SECRET_ACCESS_KEY }),
  };
}

/** The store as messages name it. */
export function describeS3(settings: Pick<S3Settings, 'endpoint' | 'region'>): string {
  if (settings.endpoint !== undefined) return settings.endpoint;
  return `AWS S3 (${settings.region !== undefined ? `region ${settings.region}` : "the AWS SDK's region"})`;
}
