/**
 * The terraform/ roots, checked offline by OpenTofu itself (built with the OpenStack provider's local mirror by
 * infra/install-tofu.sh, `make setup`): formatting, `init` from the mirror, `validate`, and `tofu test` (a mocked
 * OpenStack provider for the Chameleon module and root; for the local root, plan-level checks plus one apply whose
 * provisioners call a stand-in nodes script that records its arguments). Every root is initialised in a temporary copy
 * of terraform/, so no .terraform/ or lock file is ever written in the checkout.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..', '..');
const TERRAFORM = path.join(REPO, 'terraform');

const pin = (name: string): string => {
  const versions = fs.readFileSync(path.join(REPO, 'infra', 'versions.env'), 'utf8');
  const value = new RegExp(`^${name}=(\\S+)$`, 'm').exec(versions)?.[1];
  if (!value) throw new Error(`infra/versions.env has no ${name}=`);
  return value;
};

const TOOLS = path.join(process.env.RECSYS_CACHE ?? path.join(os.homedir(), '.cache', 'recsys'), 'tools');
const TOFU_VERSION = pin('OPENTOFU_VERSION');
const TOFU = path.join(TOOLS, `tofu-${TOFU_VERSION}`, 'tofu');
const CLI_CONFIG = path.join(TOOLS, 'tofu.rc');

/** Roots (and the module, tested on its own) relative to terraform/. */
const ROOTS = ['modules/ansible-inventory', 'modules/chameleon-gpu-nodes', 'chameleon', 'local-cluster'] as const;

let work = '';
let stubLog = '';

const tofu = (cwd: string, ...args: string[]): string => {
  const result = spawnSync(TOFU, args, {
    cwd,
    encoding: 'utf8',
    timeout: 180_000,
    env: {
      ...process.env,
      TF_CLI_CONFIG_FILE: CLI_CONFIG,
      TF_IN_AUTOMATION: '1',
      TF_INPUT: '0',
      RECSYS_NODES_STUB_LOG: stubLog,
    },
  });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`tofu ${args.join(' ')} in ${cwd} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
};

const runBlocks = (dir: string): number =>
  fs
    .readdirSync(path.join(dir, 'tests'))
    .filter((file) => file.endsWith('.tftest.hcl'))
    .reduce(
      (sum, file) => sum + (fs.readFileSync(path.join(dir, 'tests', file), 'utf8').match(/^run "/gm)?.length ?? 0),
      0,
    );

beforeAll(() => {
  // Missing tools fail the suite: these checks are part of `make test`, never skipped.
  for (const file of [TOFU, CLI_CONFIG]) {
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`bash infra/install-tofu.sh\` (make setup)`);
  }
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'recsys-tofu-'));
  stubLog = path.join(work, 'nodes-stub.log');
  fs.cpSync(TERRAFORM, path.join(work, 'terraform'), {
    recursive: true,
    filter: (source) => !/(^|\/)(\.terraform|\.terraform\.lock\.hcl|[^/]*\.tfstate(\.[^/]*)?)$/.test(source),
  });
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('tofu is the pinned version', () => {
  expect(tofu(REPO, 'version')).toMatch(new RegExp(`^OpenTofu v${TOFU_VERSION.replaceAll('.', '\\.')}$`, 'm'));
});

test('every file under terraform/ is formatted (tofu fmt -check)', () => {
  // -check only reads; a diff in the error names the file.
  tofu(REPO, 'fmt', '-check', '-recursive', '-diff', '-no-color', 'terraform');
});

describe.each(ROOTS)('terraform/%s', (root) => {
  const dir = () => path.join(work, 'terraform', root);

  test('initialises offline and validates', () => {
    tofu(dir(), 'init', '-backend=false', '-no-color');
    expect(tofu(dir(), 'validate', '-no-color')).toMatch(/Success! The configuration is valid/);
  }, 180_000);

  test('every run of its tofu tests passes', () => {
    const out = tofu(dir(), 'test', '-no-color');
    expect(out).toMatch(new RegExp(`Success! ${runBlocks(dir())} passed, 0 failed`));
  }, 300_000);
});

test('the Chameleon root installs the pinned OpenStack provider from the local mirror', () => {
  // Runs after the root's init above; the lock file it wrote lives in the temporary copy only.
  const lock = fs.readFileSync(path.join(work, 'terraform', 'chameleon', '.terraform.lock.hcl'), 'utf8');
  expect(lock).toMatch(/provider "[^"]+\/terraform-provider-openstack\/openstack"/);
  expect(lock).toMatch(new RegExp(`version\\s+= "${pin('OPENSTACK_PROVIDER_VERSION').replaceAll('.', '\\.')}"`));
});

test('the local root brings rank 0 up first and down last, with the script arguments of the contract', () => {
  // Written by tests/fixtures/nodes-stub.sh during provisioners.tftest.hcl (apply, then destroy).
  const calls = fs.readFileSync(stubLog, 'utf8').trim().split('\n');
  const pubkey = path.join(work, 'terraform', 'local-cluster', 'tests', 'fixtures', 'id_ed25519.pub');
  expect(calls).toHaveLength(6);
  expect(calls[0]).toBe(`up t2 0 10.231.8 ${pubkey}`);
  expect(calls.slice(1, 3).sort()).toEqual([`up t2 1 10.231.8 ${pubkey}`, `up t2 2 10.231.8 ${pubkey}`]);
  expect(calls.slice(3, 5).sort()).toEqual(['down t2 1', 'down t2 2']);
  expect(calls[5]).toBe('down t2 0');
});
