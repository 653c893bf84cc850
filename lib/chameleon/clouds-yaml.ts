/**
 * OpenStack credentials from a `clouds.yaml`, found and read the way openstacksdk does, so the file a Chameleon user
 * downloads from the dashboard (an application credential) works unchanged and stays outside the checkout and out of
 * workflow payloads. Supports `v3applicationcredential` (Chameleon's way) and `password` auth, `region_name` and
 * `interface`. Errors name the file and the field; secret values never appear in them (YAML syntax errors are reported
 * by line only, because the parser's own message quotes the offending line).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { z } from 'zod';
import { Secret } from './secret';

export type EndpointInterface = 'public' | 'internal' | 'admin';

/** A user or project, by id or by name within a domain. */
export interface NamedRef {
  id?: string;
  name?: string;
  domainId?: string;
  domainName?: string;
}

export type CloudAuth =
  | {
      type: 'v3applicationcredential';
      /** The credential's id, or its name together with `user`. */
      id?: string;
      name?: string;
      user?: NamedRef;
      secret: Secret;
    }
  | { type: 'password'; user: NamedRef; password: Secret; project: NamedRef };

export interface CloudConfig {
  /** The cloud's name in the file. */
  cloud: string;
  /** The file it came from. */
  file: string;
  /** Keystone's URL as written (with or without `/v3`). */
  authUrl: string;
  auth: CloudAuth;
  regionName?: string;
  interface: EndpointInterface;
}

export class CloudsYamlError extends Error {
  override readonly name = 'CloudsYamlError';
  constructor(
    readonly file: string,
    readonly field: string,
    reason: string,
  ) {
    super(`${file}: ${field ? `field '${field}' ` : ''}${reason}`);
  }
}

export interface LookupOptions {
  /** Environment to read OS_CLIENT_CONFIG_FILE, OS_CLOUD and XDG_CONFIG_HOME from (default process.env). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  home?: string;
  /** The system-wide directory (default /etc/openstack). */
  siteDir?: string;
}

const FILE_NAMES = ['clouds.yaml', 'clouds.yml', 'clouds.json'];

/** Where openstacksdk looks, in its order: the working directory, the user's config dir, the system's. */
export function cloudsYamlCandidates(opts: LookupOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const home = opts.home ?? os.homedir();
  const dirs = [
    opts.cwd ?? process.cwd(),
    env.XDG_CONFIG_HOME ? path.join(env.XDG_CONFIG_HOME, 'openstack') : undefined,
    path.join(home, '.config', 'openstack'),
    opts.siteDir ?? '/etc/openstack',
  ].filter((d): d is string => d !== undefined);
  return [...new Set(dirs)].flatMap((d) => FILE_NAMES.map((n) => path.join(d, n)));
}

/**
 * The clouds.yaml to use. OS_CLIENT_CONFIG_FILE comes first; unlike openstacksdk, which quietly moves on, a variable
 * naming a missing file is an error: falling through to another file could mean another cloud.
 */
export function findCloudsYaml(opts: LookupOptions = {}): string {
  const override = (opts.env ?? process.env).OS_CLIENT_CONFIG_FILE;
  if (override) {
    if (!fs.existsSync(override))
      throw new CloudsYamlError(override, '', 'does not exist (named by OS_CLIENT_CONFIG_FILE)');
    return override;
  }
  const candidates = cloudsYamlCandidates(opts);
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found)
    throw new Error(
      `no clouds.yaml found: set OS_CLIENT_CONFIG_FILE or create one of ${candidates.filter((f) => f.endsWith('.yaml')).join(', ')}`,
    );
  return found;
}

/** zod's messages, in the file's terms; they never quote the value (it may be a secret). */
const missingOr = (what: string) => (iss: { input?: unknown }) => (iss.input === undefined ? 'is missing' : what);
const text = z
  .string({ error: missingOr('must be a string (quote it in the YAML)') })
  .min(1, { error: 'must not be empty' });

const RawAuth = z.object(
  {
    auth_url: text,
    application_credential_id: text.optional(),
    application_credential_name: text.optional(),
    application_credential_secret: text.optional(),
    user_id: text.optional(),
    username: text.optional(),
    password: text.optional(),
    user_domain_id: text.optional(),
    user_domain_name: text.optional(),
    project_id: text.optional(),
    project_name: text.optional(),
    project_domain_id: text.optional(),
    project_domain_name: text.optional(),
  },
  { error: missingOr('must be a mapping') },
);

const RawCloud = z.object(
  {
    auth: RawAuth,
    auth_type: text.optional(),
    region_name: text.optional(),
    interface: text.optional(),
  },
  { error: missingOr('must be a mapping') },
);

type RawAuth = z.infer<typeof RawAuth>;

function formatIssue(file: string, prefix: string, issue: z.core.$ZodIssue): CloudsYamlError {
  const field = [prefix, ...issue.path.map(String)].join('.');
  return new CloudsYamlError(file, field, issue.message);
}

function parseYaml(file: string): unknown {
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CloudsYamlError(
      file,
      '',
      `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    return load(content, { filename: file });
  } catch (err) {
    // js-yaml's message includes a snippet of the file, which may be a secret's line: report the position only.
    const e = err as { reason?: string; mark?: { line?: number } };
    const line = e.mark?.line !== undefined ? `line ${e.mark.line + 1}: ` : '';
    throw new CloudsYamlError(file, '', `is not valid YAML: ${line}${e.reason ?? 'syntax error'}`);
  }
}

function normaliseInterface(file: string, field: string, value: string | undefined): EndpointInterface {
  // keystoneauth also accepts the v2-era spellings (publicURL, internalURL, adminURL).
  const v = (value ?? 'public').replace(/URL$/, '');
  if (v === 'public' || v === 'internal' || v === 'admin') return v;
  throw new CloudsYamlError(file, field, `must be public, internal or admin (value: ${JSON.stringify(value)})`);
}

function checkAuthUrl(file: string, field: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CloudsYamlError(file, field, `is not a URL (value: ${JSON.stringify(value)})`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new CloudsYamlError(file, field, `must be an http(s) URL (value: ${JSON.stringify(value)})`);
  if (url.username || url.password) throw new CloudsYamlError(file, field, 'must not carry credentials in the URL');
  return value;
}

function domainRef(id: string | undefined, name: string | undefined): Pick<NamedRef, 'domainId' | 'domainName'> {
  // Keystone needs a domain for anything named; OpenStack's default domain is what a plain install uses.
  return id ? { domainId: id } : { domainName: name ?? 'Default' };
}

function toAuth(file: string, prefix: string, authType: string, a: RawAuth): CloudAuth {
  const require = (key: keyof RawAuth, when: string): string => {
    const v = a[key];
    if (v === undefined) throw new CloudsYamlError(file, `${prefix}.auth.${key}`, `is missing (required ${when})`);
    return v;
  };
  if (authType === 'v3applicationcredential') {
    const secret = require('application_credential_secret', 'for an application credential');
    if (a.application_credential_id)
      return { type: authType, id: a.application_credential_id, secret: new Secret(secret) };
    if (!a.application_credential_name)
      throw new CloudsYamlError(
        file,
        `${prefix}.auth.application_credential_id`,
        'is missing (or give application_credential_name with user_id or username)',
      );
    if (!a.user_id && !a.username)
      throw new CloudsYamlError(
        file,
        `${prefix}.auth.user_id`,
        'is missing (required with application_credential_name)',
      );
    return {
      type: authType,
      name: a.application_credential_name,
      user: a.user_id ? { id: a.user_id } : { name: a.username, ...domainRef(a.user_domain_id, a.user_domain_name) },
      secret: new Secret(secret),
    };
  }
  const password = require('password', 'for password auth');
  if (!a.user_id && !a.username)
    throw new CloudsYamlError(file, `${prefix}.auth.username`, 'is missing (or give user_id)');
  if (!a.project_id && !a.project_name)
    throw new CloudsYamlError(
      file,
      `${prefix}.auth.project_id`,
      'is missing (or give project_name): leases belong to a project',
    );
  return {
    type: 'password',
    user: a.user_id ? { id: a.user_id } : { name: a.username, ...domainRef(a.user_domain_id, a.user_domain_name) },
    password: new Secret(password),
    project: a.project_id
      ? { id: a.project_id }
      : { name: a.project_name, ...domainRef(a.project_domain_id, a.project_domain_name) },
  };
}

/** Picks and validates one cloud of a parsed clouds.yaml. */
export function parseCloud(file: string, doc: unknown, cloudName: string | undefined): CloudConfig {
  if (typeof doc !== 'object' || doc === null || !('clouds' in doc))
    throw new CloudsYamlError(file, 'clouds', 'is missing: not a clouds.yaml');
  const clouds = doc.clouds;
  if (typeof clouds !== 'object' || clouds === null || Array.isArray(clouds))
    throw new CloudsYamlError(file, 'clouds', 'must be a mapping of cloud names to clouds');
  const names = Object.keys(clouds);
  let name = cloudName;
  if (!name) {
    if (names.length !== 1)
      throw new CloudsYamlError(
        file,
        'clouds',
        `holds ${names.length} clouds (${names.join(', ')}): name one with OS_CLOUD`,
      );
    name = names[0]!;
  }
  if (!names.includes(name))
    throw new CloudsYamlError(
      file,
      'clouds',
      `has no cloud named ${JSON.stringify(name)} (clouds: ${names.join(', ')})`,
    );
  const prefix = `clouds.${name}`;
  const parsed = RawCloud.safeParse((clouds as Record<string, unknown>)[name]);
  if (!parsed.success) throw formatIssue(file, prefix, parsed.error.issues[0]!);
  const raw = parsed.data;

  // Without auth_type, keystoneauth would assume password; a file holding an application credential means that.
  const authType = raw.auth_type ?? (raw.auth.application_credential_secret ? 'v3applicationcredential' : 'password');
  if (authType !== 'v3applicationcredential' && authType !== 'password' && authType !== 'v3password')
    throw new CloudsYamlError(
      file,
      `${prefix}.auth_type`,
      `is not supported (value: ${JSON.stringify(authType)}); use v3applicationcredential or password`,
    );
  return {
    cloud: name,
    file,
    authUrl: checkAuthUrl(file, `${prefix}.auth.auth_url`, raw.auth.auth_url),
    auth: toAuth(file, prefix, authType === 'v3password' ? 'password' : authType, raw.auth),
    ...(raw.region_name ? { regionName: raw.region_name } : {}),
    interface: normaliseInterface(file, `${prefix}.interface`, raw.interface),
  };
}

/**
 * The cloud to talk to: `cloud` (else OS_CLOUD, else the file's only cloud) from the clouds.yaml openstacksdk would
 * find.
 */
export function loadCloud(cloud?: string, opts: LookupOptions = {}): CloudConfig {
  const file = findCloudsYaml(opts);
  return parseCloud(file, parseYaml(file), cloud ?? (opts.env ?? process.env).OS_CLOUD);
}
