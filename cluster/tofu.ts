/**
 * OpenTofu for one cluster: the repository's terraform/ is copied into the cluster's state directory (so destroy runs
 * the code apply ran, and nothing is written in the checkout: no .terraform/, no lock file), a backend override
 * points the state at <state>/terraform.tfstate, and the variables go in a JSON var file. init uses the offline
 * provider mirror (TF_CLI_CONFIG_FILE).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { runCommand } from './command';
import type { ClusterPaths } from './state';
import type { ProvisionTools } from './tools';

export type TofuRoot = 'chameleon' | 'local-cluster';

export interface TofuRun {
  paths: ClusterPaths;
  tools: ProvisionTools;
  root: TofuRoot;
  vars: Record<string, string | number | boolean>;
  signal?: AbortSignal;
  onLine?: (line: string) => void;
  /** Extra environment for tofu and its provisioners (e.g. OS_CLOUD, RECSYS_CLUSTERS_DIR). */
  env?: NodeJS.ProcessEnv;
}

/** What every root outputs (terraform/README.md). */
export const TofuOutputs = z.object({
  head_address: z.object({ value: z.string() }),
  private_addresses: z.object({ value: z.array(z.string()) }),
  ansible_inventory: z.object({ value: z.string() }),
});
export interface ClusterOutputs {
  headAddress: string;
  privateAddresses: string[];
  inventory: string;
}

const rootDir = (paths: ClusterPaths, root: TofuRoot) => path.join(paths.terraform, root);

function tofuEnv(run: TofuRun): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...run.env,
    TF_CLI_CONFIG_FILE: run.tools.tofuConfig,
    TF_DATA_DIR: path.join(run.paths.dir, 'tofu-data'),
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
  };
}

async function tofu(run: TofuRun, args: string[]): Promise<string> {
  const { stdout } = await runCommand({
    cmd: run.tools.tofu,
    args: [`-chdir=${rootDir(run.paths, run.root)}`, ...args],
    env: tofuEnv(run),
    signal: run.signal,
    label: `tofu ${args[0]} (${run.root})`,
    // tofu stops gracefully on SIGINT (in-flight creates finish and are recorded in the state); a SIGKILL mid-create
    // would leave resources the state does not know.
    stopSignal: 'SIGINT',
    stopGraceMs: 10 * 60_000,
    onLine: (line) => run.onLine?.(line),
  });
  return stdout;
}

async function prepare(run: TofuRun): Promise<void> {
  // A fresh copy per apply; destroy keeps the copy apply left.
  await fs.rm(run.paths.terraform, { recursive: true, force: true });
  await fs.cp(run.tools.terraformDir, run.paths.terraform, {
    recursive: true,
    filter: (src) => !/(^|\/)(\.terraform|[^/]*\.tfstate[^/]*|\.terraform\.lock\.hcl)$/.test(src),
  });
  await writeRunFiles(run);
  await tofu(run, ['init', '-input=false', '-no-color']);
}

async function writeRunFiles(run: TofuRun): Promise<void> {
  const dir = rootDir(run.paths, run.root);
  await fs.writeFile(
    path.join(dir, 'recsys_backend_override.tf'),
    `terraform {\n  backend "local" {\n    path = ${JSON.stringify(run.paths.tfstate)}\n  }\n}\n`,
  );
  await fs.writeFile(path.join(dir, 'recsys.auto.tfvars.json'), JSON.stringify(run.vars, null, 2));
}

export async function tofuApply(run: TofuRun): Promise<ClusterOutputs> {
  await prepare(run);
  await tofu(run, ['apply', '-input=false', '-auto-approve', '-no-color', '-lock-timeout=10m']);
  const out = TofuOutputs.safeParse(JSON.parse(await tofu(run, ['output', '-json', '-no-color'])));
  if (!out.success)
    throw new Error(
      `tofu outputs of ${run.root} do not fit: ${out.error.issues.map((i) => i.path.join('.')).join(', ')}`,
    );
  return {
    headAddress: out.data.head_address.value,
    privateAddresses: out.data.private_addresses.value,
    inventory: out.data.ansible_inventory.value,
  };
}

/**
 * Destroys what the state holds; a cluster that was never applied (no state) has nothing to destroy. The variables
 * apply ran with are kept in the copy and used as they are (a destroy must not need the lease's reservation again);
 * `run.vars` only matter when the copy is gone.
 */
export async function tofuDestroy(run: TofuRun): Promise<boolean> {
  const hasState = await fs.access(run.paths.tfstate).then(
    () => true,
    () => false,
  );
  const hasCode = await fs.access(rootDir(run.paths, run.root)).then(
    () => true,
    () => false,
  );
  if (!hasState) return false;
  if (!hasCode) await prepare(run);
  else await tofu(run, ['init', '-input=false', '-no-color']);
  await tofu(run, ['destroy', '-input=false', '-auto-approve', '-no-color', '-lock-timeout=10m']);
  return true;
}
