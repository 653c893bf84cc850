/**
 * Where the provisioning tools are: OpenTofu and its offline provider mirror (infra/install-tofu.sh), ansible's venv
 * (infra/install-ansible.sh), the repository's terraform/ and ansible/ code and the local nodes' script. Tool paths
 * follow the pins in infra/versions.env, so a worker uses exactly what `make setup` built. RECSYS_TOFU,
 * RECSYS_TOFU_CLI_CONFIG and RECSYS_ANSIBLE_VENV override them (a production controller with its own installs); a
 * TF_CLI_CONFIG_FILE in the environment is not used, since it may point at a config that reaches for a registry.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..');

function pins(): Record<string, string> {
  const text = readFileSync(path.join(REPO_ROOT, 'infra', 'versions.env'), 'utf8');
  return Object.fromEntries(
    text
      .split('\n')
      .map((l) => /^([A-Z0-9_]+)=(\S+)/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
}

export interface ProvisionTools {
  tofu: string;
  /** TF_CLI_CONFIG_FILE: the provider mirror, so `tofu init` never goes to a registry. */
  tofuConfig: string;
  ansiblePlaybook: string;
  terraformDir: string;
  ansibleDir: string;
  nodesScript: string;
}

/** `cacheRoot` is ~/.cache/recsys (the parent of config().clustersDir). */
export function provisionTools(cacheRoot: string, env: NodeJS.ProcessEnv = process.env): ProvisionTools {
  const tools = path.join(cacheRoot, 'tools');
  const version = pins().OPENTOFU_VERSION;
  if (!version) throw new Error('infra/versions.env has no OPENTOFU_VERSION');
  const venv = env.RECSYS_ANSIBLE_VENV || path.join(cacheRoot, 'ansible-venv');
  return {
    tofu: env.RECSYS_TOFU || path.join(tools, `tofu-${version}`, 'tofu'),
    tofuConfig: env.RECSYS_TOFU_CLI_CONFIG || path.join(tools, 'tofu.rc'),
    ansiblePlaybook: path.join(venv, 'bin', 'ansible-playbook'),
    terraformDir: path.join(REPO_ROOT, 'terraform'),
    ansibleDir: path.join(REPO_ROOT, 'ansible'),
    nodesScript: path.join(REPO_ROOT, 'infra', 'local-cluster', 'nodes.sh'),
  };
}
