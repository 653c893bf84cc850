/**
 * The steps of the provisionTraining saga (workflows/provision-training.ts), each an activity that can be retried
 * (idempotent by the cluster id) and undone: the lease (Blazar on Chameleon, a record locally), the nodes (OpenTofu),
 * their configuration (ansible) and, on the way back, destroy and lease deletion. The same code serves both targets;
 * only the terraform root, the lease service and a few ansible variables differ. Long steps heartbeat the tool's
 * latest output line, so the Web UI shows what tofu or ansible is doing, and a cancel stops the tool.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import { converge } from '../cluster/ansible';
import { CommandError, runCommand } from '../cluster/command';
import { LocalLeases, type LeaseService } from '../cluster/leases';
import type { ClusterNode } from '../cluster/ssh';
import {
  clusterDirs,
  clusterPaths,
  ensureSshAccess,
  leaseNameOf,
  readOwner,
  removeClusterState,
  writeOwner,
  type ClusterPaths,
} from '../cluster/state';
import { tofuApply, tofuDestroy, type TofuRun } from '../cluster/tofu';
import { provisionTools, REPO_ROOT } from '../cluster/tools';
import type {
  ClusterAccess,
  ClusterSpec,
  ConvergeResult,
  LeaseInfo,
  ProvisionStepInput,
  SweptCluster,
} from './contracts';
import type { ActivityDeps } from './deps';
import { stopTrainingOnNodes } from './cluster-run';
import { cancellationSignal, heartbeating } from './heartbeat';

/** A lease service per target; Chameleon's comes from lib/chameleon (credentials from clouds.yaml). */
export type LeaseServices = (spec: ClusterSpec) => LeaseService;

const LOCAL_PREFIX_BASE = 231; // local nodes live in 10.231.x.0/24 .. 10.238.x.0/24

/** The /24 of a local cluster, from its id: distinct clusters rarely share one, and a retry gets the same. */
export function localSubnetPrefix(clusterId: string): string {
  const n = Number.parseInt(clusterId.slice(0, 6).padEnd(6, '0'), 36) >>> 0;
  return `10.${LOCAL_PREFIX_BASE + (n % 8)}.${(n >>> 3) % 250}`;
}

const injected = (step: string) => ApplicationFailure.nonRetryable(`fault injected after ${step}`, 'InjectedFault');

function homeOf(spec: ClusterSpec, paths: ClusterPaths, rank: number, user: string): string {
  return spec.target === 'local-cluster' ? path.join(paths.dir, 'nodes', `node${rank}`) : `/home/${user}/recsys`;
}

export function provisionActivities(deps: ActivityDeps, leaseServices?: LeaseServices) {
  const clustersDir = deps.config.clustersDir;
  const tools = () => provisionTools(path.dirname(clustersDir));
  const localLeases = new LocalLeases(path.join(clustersDir, '.leases'));
  const leasesFor = (spec: ClusterSpec): LeaseService => {
    if (spec.target === 'local-cluster') return localLeases;
    if (!leaseServices)
      throw ApplicationFailure.nonRetryable('no Chameleon lease service is configured', 'ConfigError');
    return leaseServices(spec);
  };
  const pathsOf = (id: string) => clusterPaths(clustersDir, id);

  const tofuRun = (input: ProvisionStepInput, lease: LeaseInfo | undefined, onLine: (l: string) => void): TofuRun => {
    const { cluster, clusterId } = input;
    const paths = pathsOf(clusterId);
    const t = tools();
    if (cluster.target === 'local-cluster')
      return {
        paths,
        tools: t,
        root: 'local-cluster',
        vars: {
          cluster_id: clusterId,
          node_count: cluster.nodes,
          subnet_prefix: localSubnetPrefix(clusterId),
          ssh_public_key_path: paths.publicKey,
          nodes_script: t.nodesScript,
        },
        env: { RECSYS_CLUSTERS_DIR: clustersDir },
        signal: cancellationSignal(),
        onLine,
      };
    const c = cluster.chameleon;
    if (!c) throw ApplicationFailure.nonRetryable('cluster.chameleon is required for target chameleon', 'ConfigError');
    return {
      paths,
      tools: t,
      root: 'chameleon',
      vars: {
        cloud: c.cloud,
        cluster_name: `recsys-${clusterId}`,
        site_kind: c.siteKind,
        node_count: cluster.nodes,
        reservation_id: lease?.reservationId ?? '',
        ...(c.siteKind === 'kvm' && lease?.flavorId ? { flavor_id: lease.flavorId } : {}),
        // The run's own key, registered as a key pair named after the run; an operator's key pair only on request.
        ssh_public_key_path: paths.publicKey,
        ...(c.keyPair ? { key_pair: c.keyPair } : {}),
        ...(c.image ? { image_name: c.image } : {}),
        ...(c.network ? { network_name: c.network } : {}),
        ...(c.sshUser ? { ssh_user: c.sshUser } : {}),
      },
      env: { OS_CLOUD: c.cloud },
      signal: cancellationSignal(),
      onLine,
    };
  };

  /** Runs a tool step while heartbeating its latest output line. */
  const withProgress = async <T>(step: string, work: (onLine: (l: string) => void) => Promise<T>): Promise<T> => {
    let last = '';
    return heartbeating(
      () => ({ step, last }),
      () => work((l) => (last = l.slice(0, 200))),
    );
  };

  /** Sweeps one cluster when its owner is gone; undefined when its owner still runs. */
  const sweepOne = async (id: string, dryRun: boolean): Promise<SweptCluster | undefined> => {
    const client = Context.current().client;
    const paths = pathsOf(id);
    const owner = await readOwner(paths);
    let reason = 'no owner record';
    if (owner) {
      try {
        const d = await client.workflow.getHandle(owner.workflowId).describe();
        if (d.status.name === 'RUNNING') return undefined;
        reason = `owner ${owner.workflowId} is ${d.status.name.toLowerCase()}`;
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        reason = `owner ${owner.workflowId} does not exist`;
      }
    }
    const removed: string[] = [];
    if (dryRun) return { clusterId: id, owner: owner?.workflowId, reason, removed };
    const spec: ClusterSpec = owner?.cluster ?? { target: 'local-cluster', nodes: owner?.nodes ?? 1, maxLeaseHours: 1 };
    const step: ProvisionStepInput = { clusterId: id, workflowId: owner?.workflowId ?? '', cluster: spec };
    // Destroy runs with the variables apply used (kept in the state directory's copy of the code).
    if (await tofuDestroy(tofuRun(step, undefined, () => undefined))) removed.push('nodes (tofu destroy)');
    if (spec.target === 'local-cluster') {
      await sweepLocalNodes(tools().nodesScript, clustersDir, id);
      removed.push('namespaces');
    }
    const leases = leasesFor(spec);
    for (const lease of await leases.list(leaseNameOf(id))) {
      await leases.delete(lease.id);
      removed.push(`lease ${lease.name}`);
    }
    await removeClusterState(paths);
    removed.push('state');
    return { clusterId: id, owner: owner?.workflowId, reason, removed };
  };

  return {
    /** The lease, created when missing (by name: a retried step finds its earlier attempt's lease). */
    createLease: async (input: ProvisionStepInput): Promise<LeaseInfo> => {
      const paths = pathsOf(input.clusterId);
      await writeOwner(paths, {
        clusterId: input.clusterId,
        workflowId: input.workflowId,
        target: input.cluster.target,
        nodes: input.cluster.nodes,
        cluster: input.cluster,
        createdAt: new Date().toISOString(),
      });
      const lease = await leasesFor(input.cluster).ensure({
        name: leaseNameOf(input.clusterId),
        nodes: input.cluster.nodes,
        endsAt: new Date(Date.now() + input.cluster.maxLeaseHours * 3_600_000),
        nodeType: input.cluster.chameleon?.nodeType,
      });
      if (input.failAfter) throw injected('lease');
      return lease;
    },

    awaitLease: async (input: ProvisionStepInput & { leaseId: string }): Promise<LeaseInfo> => {
      let status = 'PENDING';
      const lease = await heartbeating(
        () => ({ status }),
        () =>
          leasesFor(input.cluster).waitActive(input.leaseId, {
            signal: cancellationSignal(),
            onPoll: (s) => (status = s),
          }),
      );
      if (input.failAfter) throw injected('await-lease');
      return lease;
    },

    /** tofu apply: the nodes, and how to reach them. */
    applyNodes: async (input: ProvisionStepInput & { lease: LeaseInfo }): Promise<ClusterAccess> => {
      const paths = pathsOf(input.clusterId);
      await ensureSshAccess(paths);
      const out = await withProgress('tofu apply', (onLine) => tofuApply(tofuRun(input, input.lease, onLine)));
      await fs.writeFile(paths.inventory, out.inventory);
      const user = input.cluster.target === 'local-cluster' ? 'root' : (input.cluster.chameleon?.sshUser ?? 'cc');
      const nodes: ClusterNode[] = out.privateAddresses.map((addr, rank) => ({
        name: `node${rank}`,
        rank,
        // Chameleon: one floating IP, on rank 0; the others are reached through it.
        host: input.cluster.target === 'chameleon' && rank === 0 ? out.headAddress : addr,
        user,
        privateAddress: addr,
        ...(input.cluster.target === 'chameleon' && rank > 0 ? { jump: `${user}@${out.headAddress}` } : {}),
      }));
      const access: ClusterAccess = {
        clusterId: input.clusterId,
        target: input.cluster.target,
        nodes,
        homes: nodes.map((n) => homeOf(input.cluster, paths, n.rank, user)),
        rdzvEndpoint: `${out.privateAddresses[0]}:29500`,
      };
      if (input.failAfter) throw injected('apply');
      return access;
    },

    /** ansible: packages, hosts, the Python env, the code, the rendezvous env file and the training wrapper. */
    configureNodes: async (input: ProvisionStepInput & { access: ClusterAccess }): Promise<ConvergeResult> => {
      const paths = pathsOf(input.clusterId);
      const local = input.cluster.target === 'local-cluster';
      const started = Date.now();
      const recap = await withProgress('ansible', (onLine) =>
        converge({
          paths,
          tools: tools(),
          vars: {
            recsys_cluster_id: input.clusterId,
            recsys_home: local
              ? `${path.join(paths.dir, 'nodes')}/{{ inventory_hostname }}`
              : `/home/{{ ansible_user }}/recsys`,
            // Local nodes share this machine's disk: its venv is already the one models/requirements.lock pins.
            recsys_venv: local ? path.dirname(path.dirname(deps.config.python)) : '{{ recsys_home }}/venv',
            recsys_expect_gpu: !local,
            recsys_manage_packages: !local,
            // Local nodes share this machine's programs: its system Python, not whatever interpreter discovery finds.
            ...(local ? { recsys_gloo_ifname: 'eth0', ansible_python_interpreter: '/usr/bin/python3' } : {}),
            // CC-Ubuntu22.04 ships Python 3.10; models/requirements.lock is pinned on 3.11 (Ubuntu's python3.11).
            ...(local
              ? {}
              : {
                  // eno1/enp*/ens3 by site and node type: the NIC of the default route, which holds sharednet1.
                  recsys_gloo_ifname: "{{ ansible_facts['default_ipv4']['interface'] }}",
                  recsys_python: 'python3.11',
                  recsys_packages: ['python3.11', 'python3.11-venv', 'ca-certificates'],
                }),
            recsys_code_src: REPO_ROOT,
          },
          signal: cancellationSignal(),
          onLine,
        }),
      );
      const bad = Object.entries(recap).filter(([, r]) => r.failed > 0 || r.unreachable > 0);
      if (bad.length > 0 || Object.keys(recap).length !== input.cluster.nodes)
        throw new Error(`ansible did not converge every node: ${JSON.stringify(recap)}`);
      if (input.failAfter) throw injected('configure');
      return {
        changed: Object.fromEntries(Object.entries(recap).map(([h, r]) => [h, r.changed])),
        seconds: (Date.now() - started) / 1000,
      };
    },

    /** Undo of training: nothing of it keeps running on the nodes (before they are destroyed, or if they are not). */
    stopTraining: async (input: ProvisionStepInput & { access: ClusterAccess }): Promise<number> =>
      stopTrainingOnNodes(pathsOf(input.clusterId), input.access, cancellationSignal()).catch((err: unknown) => {
        // Nodes that are gone have nothing running; destroy (the next undo) makes sure of the rest.
        if (err instanceof CommandError) return 0;
        throw err;
      }),

    /** tofu destroy (and, locally, a sweep of the cluster's namespaces whatever the state says). */
    destroyNodes: async (input: ProvisionStepInput): Promise<boolean> => {
      const destroyed = await withProgress('tofu destroy', (onLine) => tofuDestroy(tofuRun(input, undefined, onLine)));
      if (input.cluster.target === 'local-cluster')
        await sweepLocalNodes(tools().nodesScript, clustersDir, input.clusterId);
      return destroyed;
    },

    /** Deletes the lease, then the cluster's state (kept when destroy left resources in it, for the sweeper). */
    deleteLease: async (input: ProvisionStepInput): Promise<void> => {
      const leases = leasesFor(input.cluster);
      const name = leaseNameOf(input.clusterId);
      for (const lease of await leases.list(name)) if (lease.name === name) await leases.delete(lease.id);
      const paths = pathsOf(input.clusterId);
      if (await stateIsEmpty(paths)) await removeClusterState(paths);
    },

    /**
     * The sweeper: every cluster this controller knows of (state directories, local namespaces, lease records) whose
     * owning workflow is no longer running is destroyed, its lease deleted and its state removed.
     */
    sweepClusters: async (input: { dryRun?: boolean } = {}): Promise<SweptCluster[]> => {
      const ids = new Set<string>(await clusterDirs(clustersDir));
      for (const id of await listLocalNodeClusters(tools().nodesScript, clustersDir)) ids.add(id);
      for (const lease of await localLeases.list('recsys-')) ids.add(lease.name.slice('recsys-'.length));
      const swept: SweptCluster[] = [];
      for (const id of ids) {
        try {
          const found = await heartbeating(
            () => ({ clusterId: id, swept: swept.length }),
            () => sweepOne(id, input.dryRun === true),
          );
          if (found) swept.push(found);
        } catch (err) {
          // One cluster that cannot be swept now (a cloud that is down) must not keep the others alive.
          swept.push({ clusterId: id, reason: 'sweep failed', removed: [], error: String(err) });
        }
      }
      return swept;
    },
  };
}

async function stateIsEmpty(paths: ClusterPaths): Promise<boolean> {
  const raw = await fs.readFile(paths.tfstate, 'utf8').catch(() => undefined);
  if (raw === undefined) return true;
  const state = JSON.parse(raw) as { resources?: unknown[] };
  return (state.resources ?? []).length === 0;
}

async function sweepLocalNodes(script: string, clustersDir: string, id: string): Promise<void> {
  await runCommand({ cmd: script, args: ['sweep', id], env: { ...process.env, RECSYS_CLUSTERS_DIR: clustersDir } });
}

async function listLocalNodeClusters(script: string, clustersDir: string): Promise<string[]> {
  const { stdout } = await runCommand({
    cmd: script,
    args: ['list'],
    env: { ...process.env, RECSYS_CLUSTERS_DIR: clustersDir },
  });
  return stdout.split('\n').filter(Boolean);
}
