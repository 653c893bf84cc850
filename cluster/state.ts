/**
 * A training cluster's state on the controller, one directory per cluster under config().clustersDir:
 *
 *   <id>/owner.json        which workflow run the cluster belongs to (the sweeper's question: is it still running?)
 *   <id>/id_ed25519(.pub)  the SSH key the nodes trust (made here; the private half never leaves the controller)
 *   <id>/ssh_config        how every ssh (ours and ansible's) reaches the nodes: key, known hosts, jump host
 *   <id>/terraform/        the terraform code the cluster was applied with, so destroy runs the same code
 *   <id>/terraform.tfstate tofu's state (local backend)
 *   <id>/inventory.yml     the ansible inventory tofu printed
 *
 * The id (lib/cluster-id.ts) is derived from the owning workflow, so a retried step finds what its earlier attempt made.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CLUSTER_ID, checkClusterId } from '../lib/cluster-id';
import { ClusterSpec } from '../lib/cluster-spec';
import { runCommand } from './command';

export { CLUSTER_ID, checkClusterId, clusterIdOf } from '../lib/cluster-id';

/** The Blazar lease (or the local lease record) of a cluster: named after it, so a retry finds it by name. */
export const leaseNameOf = (id: string): string => `recsys-${checkClusterId(id)}`;

export interface ClusterPaths {
  dir: string;
  owner: string;
  key: string;
  publicKey: string;
  knownHosts: string;
  sshConfig: string;
  terraform: string;
  tfstate: string;
  inventory: string;
}

export function clusterPaths(clustersDir: string, id: string): ClusterPaths {
  const dir = path.join(clustersDir, checkClusterId(id));
  return {
    dir,
    owner: path.join(dir, 'owner.json'),
    key: path.join(dir, 'id_ed25519'),
    publicKey: path.join(dir, 'id_ed25519.pub'),
    knownHosts: path.join(dir, 'known_hosts'),
    sshConfig: path.join(dir, 'ssh_config'),
    terraform: path.join(dir, 'terraform'),
    tfstate: path.join(dir, 'terraform.tfstate'),
    inventory: path.join(dir, 'inventory.yml'),
  };
}

export const ClusterOwner = z.object({
  clusterId: z.string(),
  /** The workflow that provisioned it; the sweeper destroys the cluster once this workflow is closed. */
  workflowId: z.string(),
  target: z.enum(['local-cluster', 'chameleon']),
  nodes: z.number().int(),
  /** The spec it was made with: the sweeper destroys it (and deletes its lease) with the same settings. */
  cluster: ClusterSpec.optional(),
  createdAt: z.string(),
});
export type ClusterOwner = z.infer<typeof ClusterOwner>;

export async function writeOwner(paths: ClusterPaths, owner: ClusterOwner): Promise<void> {
  await fs.mkdir(paths.dir, { recursive: true, mode: 0o700 });
  await fs.writeFile(`${paths.owner}.partial`, JSON.stringify(owner, null, 2));
  await fs.rename(`${paths.owner}.partial`, paths.owner); // whole or absent: the sweeper reads it
}

export async function readOwner(paths: ClusterPaths): Promise<ClusterOwner | undefined> {
  const raw = await fs.readFile(paths.owner, 'utf8').catch(() => undefined);
  if (raw === undefined) return undefined;
  try {
    const parsed = ClusterOwner.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // unreadable: treated as ownerless
  }
}

/** The cluster ids that have a state directory. */
export async function clusterDirs(clustersDir: string): Promise<string[]> {
  const entries = await fs.readdir(clustersDir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && CLUSTER_ID.test(e.name)).map((e) => e.name);
}

/** The cluster's SSH key pair and ssh_config (idempotent: an existing key is kept). */
export async function ensureSshAccess(paths: ClusterPaths): Promise<void> {
  await fs.mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const exists = await fs.access(paths.key).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await runCommand({
      cmd: 'ssh-keygen',
      args: ['-q', '-t', 'ed25519', '-N', '', '-C', `recsys-${path.basename(paths.dir)}`, '-f', paths.key],
    });
  }
  // One config for our ssh calls and ansible's (-F): ProxyJump hands -F to the jump connection too, so workers
  // behind rank 0 are reached with the same key and known hosts.
  await fs.writeFile(
    paths.sshConfig,
    [
      'Host *',
      `  IdentityFile ${paths.key}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${paths.knownHosts}`,
      // New nodes have new host keys; a key that changes under a known address is still refused.
      '  StrictHostKeyChecking accept-new',
      '  BatchMode yes',
      '  ConnectTimeout 10',
      '  ServerAliveInterval 5',
      '  ServerAliveCountMax 6',
      '  LogLevel ERROR',
      '',
    ].join('\n'),
  );
}

/** Removes everything the controller kept of a cluster. */
export async function removeClusterState(paths: ClusterPaths): Promise<void> {
  await fs.rm(paths.dir, { recursive: true, force: true });
}
