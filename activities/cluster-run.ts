/**
 * models.train on every node of a provisioned cluster: the dataset (and a checkpoint to resume from) copied to each
 * node, then each node's wrapper (ansible's run-training.sh: torchrun --nnodes N --node_rank i with the rendezvous on
 * rank 0) started over ssh. Rank 0's output is the usual JSON lines, so the training activity reads it with the same
 * runPython as a local run; the other ranks print nothing and are watched for their exit. Closing an ssh connection
 * (a cancelled activity, a dead worker) closes the wrapper's stdin, and the wrapper then stops torchrun on its node.
 */
import path from 'node:path';
import fs from 'node:fs/promises';
import type { DatasetVersion } from '../lib/dataset/ref';
import { copyDirToNode, fetchFromNode, runOnNode, shellQuote, sshArgs } from '../cluster/ssh';
import type { ClusterPaths } from '../cluster/state';
import { CommandError } from '../cluster/command';
import type { ClusterAccess } from './contracts';

export interface NodeDirs {
  data: string;
  out: string;
}

export const nodeDirs = (home: string, dataset: DatasetVersion, key: string): NodeDirs => ({
  data: path.posix.join(home, 'data', dataset.name, dataset.version),
  out: path.posix.join(home, 'runs', key),
});

/** Copies the dataset, and the checkpoint to resume from, to every node (idempotent: files are overwritten). */
export async function stageOnNodes(
  paths: ClusterPaths,
  access: ClusterAccess,
  dirs: (rank: number) => NodeDirs,
  localData: string,
  resume: string | undefined,
  signal?: AbortSignal,
): Promise<void> {
  await Promise.all(
    access.nodes.map(async (node) => {
      const d = dirs(node.rank);
      await copyDirToNode(paths, node, localData, d.data, signal);
      if (resume) {
        const staging = path.join(path.dirname(resume), `resume-${node.rank}`);
        await fs.mkdir(staging, { recursive: true });
        await fs.copyFile(resume, path.join(staging, 'resume.pt'));
        await copyDirToNode(paths, node, staging, d.out, signal);
      }
    }),
  );
}

/** The remote command line of one node's wrapper. */
export function wrapperCommand(home: string, nprocPerNode: number, rdzvId: string, args: readonly string[]): string {
  if (!Number.isInteger(nprocPerNode) || nprocPerNode < 1)
    throw new Error(`nprocPerNode must be a positive integer, got ${JSON.stringify(nprocPerNode)}`);
  return [
    `NPROC_PER_NODE=${nprocPerNode}`,
    `RDZV_ID=${shellQuote(rdzvId)}`,
    shellQuote(path.posix.join(home, 'bin', 'run-training.sh')),
    ...args.map(shellQuote),
  ].join(' ');
}

/** `ssh <rank 0> <wrapper>`: the command runPython runs in place of torchrun. */
export function rank0Command(
  paths: ClusterPaths,
  access: ClusterAccess,
  nprocPerNode: number,
  rdzvId: string,
  args: (rank: number) => string[],
): { cmd: string; args: string[] } {
  const node = access.nodes[0]!;
  return {
    cmd: 'ssh',
    args: [...sshArgs(paths, node), wrapperCommand(access.homes[0]!, nprocPerNode, rdzvId, args(0))],
  };
}

/**
 * Starts ranks 1..N-1. Resolves when all exit 0; rejects, naming the node and its last output, as soon as one fails
 * (the caller then stops rank 0). `signal` stops them all.
 */
export async function runWorkerRanks(
  paths: ClusterPaths,
  access: ClusterAccess,
  nprocPerNode: number,
  rdzvId: string,
  args: (rank: number) => string[],
  signal: AbortSignal,
): Promise<void> {
  await Promise.all(
    access.nodes.slice(1).map((node) =>
      runOnNode(paths, node, wrapperCommand(access.homes[node.rank]!, nprocPerNode, rdzvId, args(node.rank)), {
        signal,
        holdStdin: true, // the wrapper runs for as long as this connection's stdin stays open
      }).catch((err: unknown) => {
        if (err instanceof CommandError)
          throw new Error(`training on ${node.name} (rank ${node.rank}) failed: ${err.message}`);
        throw err;
      }),
    ),
  );
}

/** Fetches a file rank 0 wrote (a checkpoint, the model) to `local`. */
export const fetchFromRank0 = (
  paths: ClusterPaths,
  access: ClusterAccess,
  remote: string,
  local: string,
  signal?: AbortSignal,
): Promise<void> => fetchFromNode(paths, access.nodes[0]!, remote, local, signal);

/**
 * Stops every training wrapper on the nodes (TERM: the wrapper stops its torchrun group; KILL after 15 s) and waits
 * until none is left. A retried attempt does this first, so it never meets its predecessor's torchrun holding the
 * rendezvous port; the saga's undo does it before destroy. Returns how many nodes had one running.
 */
export async function stopTrainingOnNodes(
  paths: ClusterPaths,
  access: ClusterAccess,
  signal?: AbortSignal,
): Promise<number> {
  let stopped = 0;
  await Promise.all(
    access.nodes.map(async (node) => {
      const wrapper = path.posix.join(access.homes[node.rank]!, 'bin', 'run-training.sh');
      // `[r]un-training.sh`: a pattern that does not match the remote shell running this very command line.
      const pattern = shellQuote(wrapper.replace(/run-training\.sh$/, '[r]un-training.sh'));
      const script =
        `if pkill -TERM -f ${pattern}; then echo stopped; ` +
        `for i in $(seq 75); do pgrep -f ${pattern} >/dev/null || exit 0; sleep 0.2; done; pkill -KILL -f ${pattern}; fi; true`;
      const r = await runOnNode(paths, node, script, { signal });
      if (r.stdout.includes('stopped')) stopped += 1;
    }),
  );
  return stopped;
}
