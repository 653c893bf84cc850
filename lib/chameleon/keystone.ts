/**
 * A Keystone v3 session: one token for a cloud's credential (an application credential on Chameleon), reused until
 * shortly before it expires, and the service catalog that came with it, from which the endpoint of a service type
 * (Blazar's is `reservation`) is picked by region and interface the way openstacksdk does.
 */
import { z } from 'zod';
import type { CloudAuth, CloudConfig, EndpointInterface, NamedRef } from './clouds-yaml';
import { ChameleonHttpError, requestJson, where } from './http';

/** What a service client needs from an authenticated session (Keystone's, or a test's). */
export interface Session {
  token(signal?: AbortSignal): Promise<string>;
  endpoint(serviceType: string, signal?: AbortSignal): Promise<string>;
  /** Forget the token (the service rejected it): the next call authenticates again. */
  invalidate(): void;
}

const Endpoint = z.object({
  interface: z.string(),
  region: z.string().nullish(),
  region_id: z.string().nullish(),
  url: z.string(),
});
const CatalogEntry = z.object({ type: z.string(), endpoints: z.array(Endpoint) });
export type CatalogEntry = z.infer<typeof CatalogEntry>;
const TokenBody = z.object({
  token: z.object({ expires_at: z.string(), catalog: z.array(CatalogEntry).optional() }),
});

/** Keystone's v3 root for an auth_url written with or without `/v3` (both appear in clouds.yaml files). */
export function identityBase(authUrl: string): string {
  const base = authUrl.replace(/\/+$/, '');
  return /\/v3$/.test(base) ? base : `${base}/v3`;
}

function user(u: NamedRef): Record<string, unknown> {
  if (u.id) return { id: u.id };
  return { name: u.name, domain: u.domainId ? { id: u.domainId } : { name: u.domainName } };
}

/** The body of POST /v3/auth/tokens for a credential. An application credential carries its own project scope. */
export function tokenRequestBody(auth: CloudAuth): Record<string, unknown> {
  if (auth.type === 'v3applicationcredential') {
    const credential: Record<string, unknown> = auth.id
      ? { id: auth.id, secret: auth.secret.reveal() }
      : { name: auth.name, user: user(auth.user ?? {}), secret: auth.secret.reveal() };
    return { auth: { identity: { methods: ['application_credential'], application_credential: credential } } };
  }
  return {
    auth: {
      identity: { methods: ['password'], password: { user: { ...user(auth.user), password: auth.password.reveal() } } },
      scope: { project: user(auth.project) },
    },
  };
}

/** The URL of `serviceType` in a catalog for a region (any, when the cloud names none) and an interface. */
export function pickEndpoint(
  catalog: CatalogEntry[],
  serviceType: string,
  regionName: string | undefined,
  iface: EndpointInterface,
): string {
  const entries = catalog.filter((e) => e.type === serviceType);
  if (entries.length === 0)
    throw new Error(
      `the service catalog has no '${serviceType}' service (types: ${[...new Set(catalog.map((e) => e.type))].join(', ') || 'none'})`,
    );
  const all = entries.flatMap((e) => e.endpoints);
  const region = (ep: z.infer<typeof Endpoint>) => ep.region_id ?? ep.region ?? '';
  const matching = all.filter((ep) => ep.interface === iface && (!regionName || region(ep) === regionName));
  const regions = [...new Set(matching.map(region))];
  if (matching.length === 0 || regions.length > 1) {
    const offered = all.map((ep) => `${region(ep) || '(no region)'}/${ep.interface}`).join(', ');
    throw new Error(
      matching.length === 0
        ? `no '${serviceType}' endpoint for region ${JSON.stringify(regionName ?? '(any)')} and interface ${iface} (offered: ${offered})`
        : `'${serviceType}' has ${iface} endpoints in several regions (${regions.join(', ')}): set region_name in clouds.yaml`,
    );
  }
  return matching[0]!.url;
}

export interface KeystoneOptions {
  /** Deadline of one token request, ms (default 30 s). */
  timeoutMs?: number;
  /** Get a new token this long before the old one expires, ms (default 5 min): a long call must not outlive it. */
  refreshMarginMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

interface Token {
  value: string;
  expiresAt: number;
  catalog: CatalogEntry[];
}

export class KeystoneSession implements Session {
  private readonly timeoutMs: number;
  private readonly refreshMarginMs: number;
  private readonly now: () => number;
  private cached: Token | undefined;
  private pending: Promise<Token> | undefined;

  constructor(
    readonly cloud: CloudConfig,
    opts: KeystoneOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.refreshMarginMs = opts.refreshMarginMs ?? 5 * 60_000;
    this.now = opts.now ?? Date.now;
  }

  async token(signal?: AbortSignal): Promise<string> {
    return (await this.current(signal)).value;
  }

  async endpoint(serviceType: string, signal?: AbortSignal): Promise<string> {
    const { catalog } = await this.current(signal);
    return pickEndpoint(catalog, serviceType, this.cloud.regionName, this.cloud.interface);
  }

  invalidate(): void {
    this.cached = undefined;
  }

  private async current(signal?: AbortSignal): Promise<Token> {
    if (this.cached && this.now() < this.cached.expiresAt - this.refreshMarginMs) return this.cached;
    // Concurrent callers share one request.
    this.pending ??= this.authenticate(signal).finally(() => (this.pending = undefined));
    this.cached = await this.pending;
    return this.cached;
  }

  private async authenticate(signal?: AbortSignal): Promise<Token> {
    const url = `${identityBase(this.cloud.authUrl)}/auth/tokens`;
    const res = await requestJson({
      service: 'Keystone',
      method: 'POST',
      url,
      body: tokenRequestBody(this.cloud.auth),
      timeoutMs: this.timeoutMs,
      ...(signal ? { signal } : {}),
    });
    const value = res.headers.get('x-subject-token');
    const parsed = TokenBody.safeParse(res.json);
    if (!value || !parsed.success)
      throw new ChameleonHttpError(
        'Keystone',
        'POST',
        where(url),
        res.status,
        !value
          ? 'no X-Subject-Token header in the answer'
          : `unexpected token body: ${parsed.error?.issues[0]?.message}`,
      );
    const expiresAt = Date.parse(parsed.data.token.expires_at);
    if (Number.isNaN(expiresAt))
      throw new Error(`Keystone token expires_at is not a date: ${JSON.stringify(parsed.data.token.expires_at)}`);
    return { value, expiresAt, catalog: parsed.data.token.catalog ?? [] };
  }
}
