/**
 * Leases: the reservation that pays for a cluster's nodes, bounded by an end date. On Chameleon it is a Blazar lease
 * (lib/chameleon); the local-cluster target keeps the same lifecycle in a record file, so the saga, the sweeper and
 * the tests exercise one path: ensure (idempotent by name) → wait until active → delete (idempotent).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

export const LeaseRecord = z.object({
  id: z.string(),
  name: z.string(),
  status: z.string(),
  /** What the nodes are created under (Chameleon's scheduler hint / flavor); the lease id for local leases. */
  reservationId: z.string().optional(),
  /** KVM sites: the flavor the reservation made. */
  flavorId: z.string().optional(),
  nodes: z.number().int(),
  endsAt: z.string(),
  /** endsAt as epoch ms (Blazar writes its dates without a zone; UTC). */
  endsAtMs: z.number(),
});
export type LeaseRecord = z.infer<typeof LeaseRecord>;

export interface LeaseRequest {
  name: string;
  nodes: number;
  endsAt: Date;
  /** Chameleon node type, e.g. gpu_rtx_6000. */
  nodeType?: string;
}

export interface LeaseService {
  /** The lease of that name, created when there is none. */
  ensure(req: LeaseRequest): Promise<LeaseRecord>;
  waitActive(id: string, opts: { signal?: AbortSignal; onPoll?: (status: string) => void }): Promise<LeaseRecord>;
  /** Deleting a lease that is gone is fine. */
  delete(id: string): Promise<void>;
  /** Leases whose names start with `prefix`. */
  list(prefix: string): Promise<LeaseRecord[]>;
}

/** Local lease records, one JSON file per lease under `<dir>` (the clusters directory's .leases/). */
export class LocalLeases implements LeaseService {
  constructor(private readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  private async read(name: string): Promise<LeaseRecord | undefined> {
    const raw = await fs.readFile(this.file(name), 'utf8').catch(() => undefined);
    return raw === undefined ? undefined : LeaseRecord.parse(JSON.parse(raw));
  }

  async ensure(req: LeaseRequest): Promise<LeaseRecord> {
    const existing = await this.read(req.name);
    if (existing) return existing;
    const record: LeaseRecord = {
      id: req.name,
      name: req.name,
      status: 'ACTIVE',
      reservationId: req.name,
      nodes: req.nodes,
      endsAt: req.endsAt.toISOString(),
      endsAtMs: req.endsAt.getTime(),
    };
    await fs.mkdir(this.dir, { recursive: true });
    // Per writer, and removed on failure: a killed write leaves no half record to be read as a lease.
    const partial = `${this.file(req.name)}.${process.pid}.partial`;
    try {
      await fs.writeFile(partial, JSON.stringify(record, null, 2));
      await fs.rename(partial, this.file(req.name));
    } finally {
      await fs.rm(partial, { force: true });
    }
    return record;
  }

  async waitActive(id: string): Promise<LeaseRecord> {
    const lease = await this.read(id);
    if (!lease) throw new Error(`local lease ${id} does not exist`);
    return lease;
  }

  async delete(id: string): Promise<void> {
    await fs.rm(this.file(id), { force: true });
  }

  async list(prefix: string): Promise<LeaseRecord[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const out: LeaseRecord[] = [];
    for (const n of names)
      if (n.endsWith('.json') && n.startsWith(prefix)) {
        const lease = await this.read(n.slice(0, -'.json'.length));
        if (lease) out.push(lease);
      }
    return out;
  }
}
