/**
 * Converges a cluster's nodes with the repository's playbook (ansible/training-node.yml) over the cluster's SSH
 * access, and reads PLAY RECAP: a host that failed or was unreachable fails the converge, naming it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { runCommand } from './command';
import type { ClusterPaths } from './state';
import type { ProvisionTools } from './tools';

export interface HostRecap {
  ok: number;
  changed: number;
  unreachable: number;
  failed: number;
}

export interface ConvergeRun {
  paths: ClusterPaths;
  tools: ProvisionTools;
  vars: Record<string, unknown>;
  signal?: AbortSignal;
  onLine?: (line: string) => void;
}

/** `node0 : ok=12 changed=3 unreachable=0 failed=0 ...` lines of PLAY RECAP, by host. */
export function parseRecap(output: string): Record<string, HostRecap> {
  const out: Record<string, HostRecap> = {};
  const recap = output.slice(output.lastIndexOf('PLAY RECAP'));
  for (const m of recap.matchAll(/^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm))
    out[m[1]!] = { ok: Number(m[2]), changed: Number(m[3]), unreachable: Number(m[4]), failed: Number(m[5]) };
  return out;
}

export async function converge(run: ConvergeRun): Promise<Record<string, HostRecap>> {
  const varsFile = path.join(run.paths.dir, 'ansible-vars.json');
  await fs.writeFile(varsFile, JSON.stringify(run.vars, null, 2));
  let output = '';
  try {
    ({ stdout: output } = await runCommand({
      cmd: run.tools.ansiblePlaybook,
      args: ['-i', run.paths.inventory, path.join(run.tools.ansibleDir, 'training-node.yml'), '-e', `@${varsFile}`],
      cwd: run.tools.ansibleDir,
      env: {
        ...process.env,
        ANSIBLE_CONFIG: path.join(run.tools.ansibleDir, 'ansible.cfg'),
        // The cluster's ssh_config (key, known hosts, jump host); no ControlPersist master left running afterwards.
        ANSIBLE_SSH_ARGS: `-F ${run.paths.sshConfig} -o ControlMaster=no`,
        ANSIBLE_NOCOLOR: '1',
        ANSIBLE_FORCE_COLOR: '0',
        ANSIBLE_LOCAL_TEMP: path.join(run.paths.dir, 'ansible-tmp'),
      },
      signal: run.signal,
      label: 'ansible-playbook training-node.yml',
      tailLines: 40,
      onLine: (line) => run.onLine?.(line),
    }));
  } finally {
    await fs.rm(path.join(run.paths.dir, 'ansible-tmp'), { recursive: true, force: true });
  }
  return parseRecap(output);
}
