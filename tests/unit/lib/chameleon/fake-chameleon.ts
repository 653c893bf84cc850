/**
 * A local HTTP server on 127.0.0.1 playing Keystone (application-credential tokens, a service catalog with Blazar in
 * two regions and two interfaces) and Blazar's lease API, as documented in their API references, so the clients' own
 * logic can be tested without Chameleon. It records every request and lets a test script lease statuses and failures.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

export const GOOD_ID = 'c0ffee00app00cred00id';
export const GOOD_SECRET = 'hunter2-very-secret-value';

export interface Recorded {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface FakeLease {
  id: string;
  name: string;
  status: string;
  start_date: string;
  end_date: string;
  reservations: Record<string, unknown>[];
  /** Statuses the next GETs of this lease report, one per GET (the last one stays). */
  script?: string[];
}

/** The Blazar sites of the catalog: path prefix → where a request landed. */
export const SITES = { uc: '/uc', tacc: '/tacc', taccInternal: '/tacc-internal' } as const;

export class FakeChameleon {
  readonly requests: Recorded[] = [];
  readonly leases = new Map<string, FakeLease>();
  readonly validTokens = new Set<string>();
  tokensIssued = 0;
  /** Lifetime of issued tokens, ms. */
  tokenLifetimeMs = 3_600_000;
  /** The next POST /leases answers this instead of creating. */
  failNextCreate: { status: number; body: unknown } | undefined;
  url = '';
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private readonly sockets = new Set<net.Socket>();

  async start(): Promise<this> {
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** Requests to Blazar (not Keystone). */
  blazarRequests(): Recorded[] {
    return this.requests.filter((r) => !r.path.startsWith('/identity'));
  }

  addLease(lease: Partial<FakeLease> & { name: string }): FakeLease {
    const full: FakeLease = {
      id: randomUUID(),
      status: 'ACTIVE',
      start_date: '2030-01-01T10:00:00.000000',
      end_date: '2030-01-01T14:00:00.000000',
      reservations: [],
      ...lease,
    };
    this.leases.set(full.id, full);
    return full;
  }

  catalog(): unknown[] {
    return [
      {
        type: 'compute',
        name: 'nova',
        endpoints: [{ interface: 'public', region: 'CHI@TACC', region_id: 'CHI@TACC', url: `${this.url}/nova` }],
      },
      {
        type: 'reservation',
        name: 'blazar',
        endpoints: [
          { interface: 'public', region: 'CHI@UC', region_id: 'CHI@UC', url: `${this.url}${SITES.uc}/v1` },
          // Registered without the version, as some sites do.
          { interface: 'public', region: 'CHI@TACC', region_id: 'CHI@TACC', url: `${this.url}${SITES.tacc}/` },
          {
            interface: 'internal',
            region: 'CHI@TACC',
            region_id: 'CHI@TACC',
            url: `${this.url}${SITES.taccInternal}/v1`,
          },
        ],
      },
    ];
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body: unknown = text ? JSON.parse(text) : undefined;
    const path = new URL(req.url ?? '/', this.url).pathname;
    this.requests.push({ method: req.method ?? '', path, headers: req.headers, body });
    const send = (status: number, json?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...headers });
      res.end(json === undefined ? undefined : JSON.stringify(json));
    };

    if (path === '/identity/v3/auth/tokens' && req.method === 'POST') {
      const cred = (body as { auth?: { identity?: { application_credential?: { id?: string; secret?: string } } } })
        ?.auth?.identity?.application_credential;
      if (cred?.id !== GOOD_ID || cred.secret !== GOOD_SECRET)
        return send(401, {
          error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' },
        });
      const token = `gAAAAA-token-${++this.tokensIssued}`;
      this.validTokens.add(token);
      const expires = new Date(Date.now() + this.tokenLifetimeMs).toISOString().replace('Z', '000Z');
      return send(201, { token: { expires_at: expires, catalog: this.catalog() } }, { 'x-subject-token': token });
    }

    const site = Object.values(SITES)
      .sort((a, b) => b.length - a.length)
      .find((p) => path.startsWith(`${p}/v1/`) || path === `${p}/v1`);
    if (!site) return send(404, { error_code: 404, error_message: `no route ${path}`, error_name: 404 });
    if (!this.validTokens.has(String(req.headers['x-auth-token'])))
      return send(401, { error_code: 401, error_message: 'Authentication required', error_name: 401 });
    const rest = path.slice(`${site}/v1`.length);
    const notFound = (id: string) =>
      send(404, { error_code: 404, error_message: `Object with {'lease_id': '${id}'} not found`, error_name: 404 });
    const view = (l: FakeLease): Omit<FakeLease, 'script'> => ({
      id: l.id,
      name: l.name,
      status: l.status,
      start_date: l.start_date,
      end_date: l.end_date,
      reservations: l.reservations,
    });

    if (rest === '/leases' && req.method === 'GET') return send(200, { leases: [...this.leases.values()].map(view) });
    if (rest === '/leases' && req.method === 'POST') {
      if (this.failNextCreate) {
        const { status, body: failure } = this.failNextCreate;
        this.failNextCreate = undefined;
        return send(status, failure);
      }
      const b = body as { name: string; start_date: string; end_date: string; reservations: Record<string, unknown>[] };
      const id = randomUUID();
      const lease = this.addLease({
        id,
        name: b.name,
        status: 'PENDING',
        start_date: '2030-01-01T10:00:00.000000',
        end_date: `${b.end_date.replace(' ', 'T')}:00.000000`,
        reservations: b.reservations.map((r) => ({ ...r, id: randomUUID(), lease_id: id, status: 'pending' })),
      });
      return send(201, { lease: view(lease) });
    }
    const m = /^\/leases\/([^/]+)$/.exec(rest);
    if (m) {
      const id = decodeURIComponent(m[1]!);
      const lease = this.leases.get(id);
      if (!lease) return notFound(id);
      if (req.method === 'GET') {
        if (lease.script?.length) lease.status = lease.script.length > 1 ? lease.script.shift()! : lease.script[0]!;
        return send(200, { lease: view(lease) });
      }
      if (req.method === 'DELETE') {
        this.leases.delete(id);
        return send(204);
      }
    }
    return send(405, { error_code: 405, error_message: 'method not allowed', error_name: 405 });
  }
}
