/**
 * Where a training runs when not on the worker's machine: the training target, its node count, the cap on the lease
 * and, for Chameleon, the allocation's choices (terraform/README.md). Credentials never appear here: they come from
 * clouds.yaml on the controller. Checked where it enters (the CLI, the workflow input), errors naming the field.
 */
import { z } from 'zod';

export const CLUSTER_TARGETS = ['local-cluster', 'chameleon'] as const;
export type ClusterTarget = (typeof CLUSTER_TARGETS)[number];

export const ChameleonSpec = z.strictObject({
  /** baremetal: CHI@TACC / CHI@UC GPU nodes; kvm: KVM@TACC GPU virtual machines. */
  siteKind: z.enum(['baremetal', 'kvm']),
  /** Blazar node type of bare-metal nodes, e.g. gpu_rtx_6000. */
  nodeType: z.string().regex(/^[a-z0-9_]+$/),
  /** KVM@TACC: the id of the GPU flavor to reserve instances of (a flavor:instance reservation). */
  flavorId: z.string().min(1).optional(),
  /** The cloud in clouds.yaml (OS_CLOUD). */
  cloud: z.string().min(1),
  /**
   * A key pair registered at the site, for the nodes to trust besides the run's own key. Unset (the default), the run
   * registers its own key (made on the controller, destroyed with the run), which is what the platform's ssh uses.
   */
  keyPair: z.string().min(1).optional(),
  image: z.string().min(1).optional(),
  network: z.string().min(1).optional(),
  sshUser: z.string().min(1).optional(),
});
export type ChameleonSpec = z.infer<typeof ChameleonSpec>;
const kvmHasFlavor = (c: ChameleonSpec | undefined) => c?.siteKind !== 'kvm' || c.flavorId !== undefined;

export const ClusterSpec = z
  .strictObject({
    target: z.enum(CLUSTER_TARGETS),
    /** torchrun --nnodes. */
    nodes: z.number().int().min(1).max(8),
    /** The lease ends this long after it starts, whatever happens to the run: the cap on what a run can cost. */
    maxLeaseHours: z.number().positive().max(168),
    chameleon: ChameleonSpec.optional(),
  })
  .refine((s) => s.target !== 'chameleon' || s.chameleon !== undefined, {
    message: 'target chameleon needs the chameleon settings (siteKind, nodeType, cloud)',
    path: ['chameleon'],
  })
  .refine((s) => kvmHasFlavor(s.chameleon), {
    message: 'siteKind kvm reserves instances of a flavor: give chameleon.flavorId',
    path: ['chameleon', 'flavorId'],
  });
export type ClusterSpec = z.infer<typeof ClusterSpec>;

/** Parses a cluster spec; the error names each field that is wrong and its value. */
export function parseClusterSpec(raw: unknown, where = 'cluster'): ClusterSpec {
  const r = ClusterSpec.safeParse(raw);
  if (r.success) return r.data;
  throw new Error(
    `${where}: ` +
      r.error.issues
        .map((i) => {
          let v: unknown = raw;
          for (const k of i.path) v = (v as Record<PropertyKey, unknown> | undefined)?.[k];
          return `${i.path.join('.') || '(root)'}: ${i.message} (value: ${JSON.stringify(v)})`;
        })
        .join('; '),
  );
}
