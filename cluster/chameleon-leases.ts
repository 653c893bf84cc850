/**
 * Chameleon's leases for the saga (the LeaseService of cluster/leases.ts) over Blazar's REST API (lib/chameleon):
 * credentials from clouds.yaml on the controller, one physical:host reservation of N nodes of a node type (bare metal)
 * or a flavor:instance reservation of N instances (KVM@TACC), named after the run.
 */
import { BlazarClient, type Lease } from '../lib/chameleon/blazar';
import { loadCloud } from '../lib/chameleon/clouds-yaml';
import { KeystoneSession } from '../lib/chameleon/keystone';
import { parseBlazarDate } from '../lib/chameleon/lease-request';
import type { ChameleonSpec } from '../lib/cluster-spec';
import type { LeaseRecord, LeaseRequest, LeaseService } from './leases';

/** How long a lease may take to start (Blazar starts "now" leases within minutes when the hosts are free). */
const START_TIMEOUT_MS = 60 * 60_000;

export class ChameleonLeases implements LeaseService {
  private client: BlazarClient | undefined;

  constructor(
    private readonly spec: ChameleonSpec,
    private readonly maxHours: number,
    /** Between polls of a starting lease (python-chi's 10 s). */
    private readonly pollMs = 10_000,
  ) {}

  /** Built on first use: reading clouds.yaml is the caller's first contact with the credentials. */
  private blazar(): BlazarClient {
    this.client ??= new BlazarClient(new KeystoneSession(loadCloud(this.spec.cloud)));
    return this.client;
  }

  private record(lease: Lease, reservationIds: string[] = []): LeaseRecord {
    const compute = lease.reservations.find(
      (r) => r.resource_type === 'physical:host' || r.resource_type === 'flavor:instance',
    );
    const reservationId = reservationIds[0] ?? compute?.id;
    return {
      id: lease.id,
      name: lease.name,
      status: lease.status,
      reservationId,
      // KVM@TACC: Blazar creates the reserved flavor with the reservation's id.
      ...(this.spec.siteKind === 'kvm' && reservationId ? { flavorId: reservationId } : {}),
      nodes: compute?.max ?? compute?.amount ?? 0,
      endsAt: lease.end_date,
      endsAtMs: parseBlazarDate(lease.end_date).getTime(),
    };
  }

  async ensure(req: LeaseRequest): Promise<LeaseRecord> {
    const { lease } = await this.blazar().createLease({
      name: req.name,
      ...(this.spec.siteKind === 'kvm' ? { flavorId: this.spec.flavorId } : { nodeType: this.spec.nodeType }),
      count: req.nodes,
      end: req.endsAt,
      maxHours: this.maxHours,
    });
    return this.record(lease);
  }

  async waitActive(
    id: string,
    opts: { signal?: AbortSignal; onPoll?: (status: string) => void },
  ): Promise<LeaseRecord> {
    const { lease, reservationIds } = await this.blazar().waitUntilActive(id, {
      signal: opts.signal,
      timeoutMs: START_TIMEOUT_MS,
      intervalMs: this.pollMs,
      onPoll: (l) => opts.onPoll?.(l.status),
    });
    return this.record(lease, reservationIds);
  }

  async delete(id: string): Promise<void> {
    await this.blazar().deleteLease(id);
  }

  async list(prefix: string): Promise<LeaseRecord[]> {
    return (await this.blazar().listLeases(prefix)).map((l) => this.record(l));
  }
}
