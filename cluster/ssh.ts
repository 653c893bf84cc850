/**
 * Reaching a cluster's nodes over SSH with the cluster's own ssh_config (state.ts): run a command, copy a directory
 * to a node (tar over ssh: no rsync needed on either side), fetch a file back. Workers behind a head node (Chameleon:
 * one floating IP on rank 0) are reached with ProxyJump.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CommandError, runCommand, type CommandResult } from './command';
import type { ClusterPaths } from './state';

export interface ClusterNode {
  /** Inventory name, e.g. node0. */
  name: string;
  rank: number;
  /** The address the controller connects to (rank 0's floating IP, or a worker's private address behind it). */
  host: string;
  user: string;
  /** The address the other nodes reach it at (rendezvous, gloo/NCCL). */
  privateAddress: string;
  /** `user@host` of the jump host, for nodes the controller cannot reach directly. */
  jump?: string;
}

/** Single quotes for a remote shell. */
export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export function sshArgs(paths: Pick<ClusterPaths, 'sshConfig'>, node: ClusterNode): string[] {
  return ['-F', paths.sshConfig, ...(node.jump ? ['-J', node.jump] : []), `${node.user}@${node.host}`];
}

export interface RemoteRun {
  signal?: AbortSignal;
  holdStdin?: boolean;
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  input?: string;
}

/** Runs a shell command line on the node. */
export function runOnNode(
  paths: Pick<ClusterPaths, 'sshConfig'>,
  node: ClusterNode,
  command: string,
  opts: RemoteRun = {},
): Promise<CommandResult> {
  return runCommand({
    cmd: 'ssh',
    args: [...sshArgs(paths, node), command],
    label: `ssh ${node.name}`,
    ...opts,
  });
}

/** Copies the contents of `localDir` into `remoteDir` on the node (created; existing files are overwritten). */
export async function copyDirToNode(
  paths: Pick<ClusterPaths, 'sshConfig'>,
  node: ClusterNode,
  localDir: string,
  remoteDir: string,
  signal?: AbortSignal,
): Promise<void> {
  const tar = spawn('tar', ['-C', localDir, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'], signal });
  const ssh = spawn(
    'ssh',
    [...sshArgs(paths, node), `mkdir -p ${shellQuote(remoteDir)} && tar -C ${shellQuote(remoteDir)} -xf -`],
    { stdio: ['pipe', 'ignore', 'pipe'], signal },
  );
  let stderr = '';
  ssh.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  tar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = (p: ReturnType<typeof spawn>) =>
    new Promise<number | null>((resolve) => {
      p.on('error', () => resolve(-1));
      p.on('close', (c) => resolve(c));
    });
  // A pipeline, not pipe(): ssh exiting early (a dead node, a cancel) is an EPIPE to report, not an unhandled error,
  // and tar is stopped rather than left blocked on a full pipe.
  const piped = pipeline(tar.stdout, ssh.stdin).catch(() => tar.kill('SIGKILL'));
  const [tc, sc] = await Promise.all([exited(tar), exited(ssh)]);
  await piped;
  if (tc !== 0 || sc !== 0)
    throw new CommandError(`copy ${localDir} to ${node.name}:${remoteDir}`, sc !== 0 ? sc : tc, stderr.trim());
}

/** Fetches one file from the node into `localPath` (written whole or not at all). */
export async function fetchFromNode(
  paths: Pick<ClusterPaths, 'sshConfig'>,
  node: ClusterNode,
  remotePath: string,
  localPath: string,
  signal?: AbortSignal,
): Promise<void> {
  await fs.mkdir(path.dirname(localPath), { recursive: true });
  const partial = `${localPath}.partial`;
  const ssh = spawn('ssh', [...sshArgs(paths, node), `cat ${shellQuote(remotePath)}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    signal,
  });
  let stderr = '';
  ssh.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = new Promise<number | null>((resolve) => {
    ssh.on('error', () => resolve(-1));
    ssh.on('close', (c) => resolve(c));
  });
  await pipeline(ssh.stdout, createWriteStream(partial)).catch(() => undefined);
  const c = await code;
  if (c !== 0) {
    await fs.rm(partial, { force: true });
    throw new CommandError(`fetch ${node.name}:${remotePath}`, c, stderr.trim());
  }
  await fs.rename(partial, localPath);
}
