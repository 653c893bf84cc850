/**
 * The training-node ansible (ansible/), checked with the pinned ansible-core and ansible-lint of
 * infra/install-ansible.sh (`make setup`; a missing venv fails the suite, never skips it): syntax, lint at the
 * production profile, a real converge of the role against this machine (connection: local, twice: the second run
 * changes nothing), the fail-fast GPU check, and the wrapper's promise that nothing outlives the controller's ssh
 * session. The converge writes only under a temporary directory: the hosts file is a temporary file, bind-mounted in
 * a private mount namespace the way `ip netns exec` mounts /etc/netns/<ns>/hosts, and the Python env is this
 * machine's models venv, which already satisfies models/requirements.lock.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..', '..');
const ANSIBLE_DIR = path.join(REPO, 'ansible');
const PLAYBOOK = path.join(ANSIBLE_DIR, 'training-node.yml');
const CACHE = process.env.RECSYS_CACHE ?? path.join(os.homedir(), '.cache', 'recsys');
const ANSIBLE_BIN = path.join(process.env.RECSYS_ANSIBLE_VENV ?? path.join(CACHE, 'ansible-venv'), 'bin');
const MODELS_VENV = process.env.RECSYS_VENV ?? path.join(CACHE, 'venv');
const GRACE_SECONDS = 2;

let work = '';
const tmp = (...parts: string[]) => path.join(work, ...parts);
const home = () => tmp('home');

interface Run {
  status: number | null;
  output: string;
}

/** An ansible tool from the pinned venv; PATH keeps the venv first (ansible-lint insists) and stays minimal. */
function ansible(tool: string, args: string[], opts: { cwd?: string; path?: string; wrap?: string[] } = {}): Run {
  const cmd = path.join(ANSIBLE_BIN, tool);
  const [file, argv] = opts.wrap ? [opts.wrap[0]!, [...opts.wrap.slice(1), cmd, ...args]] : [cmd, args];
  const result = spawnSync(file, argv, {
    cwd: opts.cwd ?? ANSIBLE_DIR,
    encoding: 'utf8',
    timeout: 150_000,
    env: {
      ...process.env,
      PATH: opts.path ?? `${ANSIBLE_BIN}:/usr/local/bin:/usr/bin:/bin`,
      ANSIBLE_CONFIG: path.join(ANSIBLE_DIR, 'ansible.cfg'),
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_FORCE_COLOR: '0',
      ANSIBLE_LOCAL_TEMP: tmp('ansible-local'),
      ANSIBLE_REMOTE_TEMP: tmp('ansible-remote'),
      NO_COLOR: '1',
    },
  });
  if (result.error) throw result.error;
  return { status: result.status, output: `${result.stdout}\n${result.stderr}` };
}

/** ansible-playbook of the training-node playbook on node0, with optional extra vars. */
const playbook = (extra: string[] = [], opts: { path?: string; wrap?: string[] } = {}) =>
  ansible('ansible-playbook', ['-i', tmp('inventory.yml'), '--limit', 'node0', ...extra, PLAYBOOK], opts);

/** node0's `ok= changed= ... failed=` counts from PLAY RECAP. */
function recap(run: Run): Record<string, number> {
  const line = /^node0\s+:\s+(.*)$/m.exec(run.output.slice(run.output.lastIndexOf('PLAY RECAP')));
  if (!line) throw new Error(`no PLAY RECAP line for node0 in:\n${run.output}`);
  return Object.fromEntries([...line[1]!.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
}

/** The converge as a local node sees it: recsys_hosts_file is a bind mount (of netns-hosts), in a private namespace. */
const converge = () =>
  playbook([], {
    wrap: [
      'unshare',
      '--mount',
      '--',
      'sh',
      '-c',
      'mount --bind "$1" "$2" && shift 2 && exec "$@"',
      'sh',
      tmp('netns-hosts'),
      tmp('hosts'),
    ],
  });

const modelFiles = (root: string): string[] =>
  (fs.readdirSync(root, { recursive: true }) as string[])
    .filter((rel) => !/(^|\/)__pycache__(\/|$)/.test(rel) && fs.statSync(path.join(root, rel)).isFile())
    .sort();

/** True while `pid` runs (a zombie waiting for its parent to reap it has stopped running). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  for (const deadline = Date.now() + ms; !check(); await sleep(50))
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
}

beforeAll(() => {
  for (const tool of ['ansible-playbook', 'ansible-lint']) {
    const file = path.join(ANSIBLE_BIN, tool);
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`bash infra/install-ansible.sh\` (make setup)`);
  }
  if (!fs.existsSync(path.join(MODELS_VENV, 'bin', 'python')))
    throw new Error(`${MODELS_VENV} is missing: run \`bash infra/install.sh\` (make setup)`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'recsys-ansible-'));
  fs.writeFileSync(tmp('hosts'), '127.0.0.1 localhost\n');
  fs.writeFileSync(tmp('netns-hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  const local = { ansible_connection: 'local', ansible_python_interpreter: '{{ ansible_playbook_python }}' };
  const inventory = {
    training_nodes: {
      hosts: {
        node0: { ...local, node_rank: 0, private_address: '10.99.0.10' },
        node1: { ...local, node_rank: 1, private_address: '10.99.0.11' },
      },
      vars: {
        nnodes: 2,
        rdzv_endpoint: '10.99.0.10:29500',
        recsys_home: home(),
        recsys_venv: MODELS_VENV,
        recsys_code_src: REPO,
        recsys_hosts_file: tmp('hosts'),
        recsys_cluster_id: 'ut1',
        recsys_gloo_ifname: 'lo',
        recsys_manage_packages: false,
        recsys_expect_gpu: false,
        recsys_kill_grace_seconds: GRACE_SECONDS,
        recsys_connect_timeout: 30,
      },
    },
  };
  // JSON is YAML: the inventory plugin reads it as such.
  fs.writeFileSync(tmp('inventory.yml'), JSON.stringify(inventory, null, 2));
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('ansible-core and ansible-lint are the versions infra/versions.env pins', () => {
  const versions = fs.readFileSync(path.join(REPO, 'infra', 'versions.env'), 'utf8');
  const pin = (name: string) => new RegExp(`^${name}=(\\S+)$`, 'm').exec(versions)?.[1];
  expect(ansible('ansible-playbook', ['--version']).output).toContain(`[core ${pin('ANSIBLE_CORE_VERSION')}]`);
  expect(ansible('ansible-lint', ['--version']).output).toContain(`ansible-lint ${pin('ANSIBLE_LINT_VERSION')}`);
});

test('the playbook passes ansible-playbook --syntax-check', () => {
  const run = ansible('ansible-playbook', ['--syntax-check', '-i', tmp('inventory.yml'), PLAYBOOK]);
  expect(run.output).toContain('playbook: ');
  expect(run.status).toBe(0);
});

test('ansible/ passes ansible-lint at the production profile', () => {
  const run = ansible('ansible-lint', []);
  if (run.status !== 0) throw new Error(`ansible-lint failed:\n${run.output}`);
  expect(run.output).toMatch(/Profile 'production' was required, and it passed/);
});

test('a node expecting a GPU stops at once when nvidia-smi is missing or fails', () => {
  // Missing: PATH without any nvidia-smi (this machine has no GPU). A fresh recsys_home shows nothing slow ran.
  const gpuHome = tmp('gpu-home');
  const missing = playbook(['-e', 'recsys_expect_gpu=true', '-e', `recsys_home=${gpuHome}`]);
  expect(missing.status).not.toBe(0);
  expect(missing.output).toContain(
    'recsys_expect_gpu is true but on node0 nvidia-smi is not installed (not found on PATH). A GPU node needs the NVIDIA driver',
  );
  expect(recap(missing)).toMatchObject({ failed: 1, changed: 0 });
  expect(fs.existsSync(gpuHome)).toBe(false);

  // Present but failing, as with a driver that is not loaded.
  fs.mkdirSync(tmp('fake-gpu'));
  fs.writeFileSync(
    tmp('fake-gpu', 'nvidia-smi'),
    '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n',
    { mode: 0o755 },
  );
  const failing = playbook(['-e', '{"recsys_expect_gpu": true}', '-e', `recsys_home=${gpuHome}`], {
    path: `${ANSIBLE_BIN}:${tmp('fake-gpu')}:/usr/local/bin:/usr/bin:/bin`,
  });
  expect(failing.status).not.toBe(0);
  expect(failing.output).toContain(
    'on node0 nvidia-smi failed with exit code 9 (NVIDIA-SMI has failed because it could not communicate',
  );
  expect(fs.existsSync(gpuHome)).toBe(false);
});

describe('a converge of this machine as node0 of two', () => {
  let first: Run;
  let second: Run;

  beforeAll(() => {
    // A module the repository no longer has, left from an earlier converge, must go.
    fs.mkdirSync(path.join(home(), 'code', 'models'), { recursive: true });
    fs.writeFileSync(path.join(home(), 'code', 'models', 'removed_module.py'), 'raise SystemExit("stale")\n');
    first = converge();
    second = converge();
  }, 300_000);

  test('converges, and the second run changes nothing', () => {
    if (recap(first).failed !== 0) throw new Error(`first converge failed:\n${first.output}`);
    expect(recap(first).changed).toBeGreaterThan(0);
    if (recap(second).changed !== 0 || recap(second).failed !== 0)
      throw new Error(`second converge was not a no-op:\n${second.output}`);
    expect(second.status).toBe(0);
  });

  test('writes the rendezvous settings', () => {
    const env = fs.readFileSync(path.join(home(), 'training.env'), 'utf8');
    const settings = env.split('\n').filter((line) => line && !line.startsWith('#'));
    expect(settings).toEqual([
      'NNODES=2',
      'NODE_RANK=0',
      'RDZV_ENDPOINT=10.99.0.10:29500',
      'GLOO_SOCKET_IFNAME=lo',
      'NCCL_SOCKET_IFNAME=lo',
      'OMP_NUM_THREADS=1',
      `RECSYS_HOME=${home()}`,
      `RECSYS_VENV=${MODELS_VENV}`,
      `RECSYS_CODE_DIR=${home()}/code`,
      `PYTHONPATH=${home()}/code`,
      'PYTHONUNBUFFERED=1',
    ]);
  });

  test('installs the wrapper, executable, with torchrun under its own process group', () => {
    const wrapper = path.join(home(), 'bin', 'run-training.sh');
    expect(fs.statSync(wrapper).mode & 0o777).toBe(0o755);
    const text = fs.readFileSync(wrapper, 'utf8');
    expect(text).toMatch(/^#!\/usr\/bin\/env bash\n/);
    expect(text).toContain(`readonly grace_seconds=${GRACE_SECONDS}\n`);
    expect(text).toMatch(/setsid "\$torchrun" --nnodes "\$NNODES" --node_rank "\$NODE_RANK"/);
    expect(text).toContain('-m models.train "$@" </dev/null &');
    expect(spawnSync('bash', ['-n', wrapper]).status).toBe(0);
  });

  test('copies exactly the repository models/ package', () => {
    const copied = path.join(home(), 'code', 'models');
    expect(modelFiles(copied)).toEqual(modelFiles(path.join(REPO, 'models')));
    expect(fs.readFileSync(path.join(copied, 'train.py'), 'utf8')).toBe(
      fs.readFileSync(path.join(REPO, 'models', 'train.py'), 'utf8'),
    );
  });

  test("names every node in the node's own hosts file (a bind mount) and nowhere else", () => {
    expect(fs.readFileSync(tmp('netns-hosts'), 'utf8')).toBe(
      '127.0.0.1 localhost\n::1 localhost\n' +
        '# BEGIN recsys cluster ut1\n10.99.0.10 node0\n10.99.0.11 node1\n# END recsys cluster ut1\n',
    );
    expect(fs.readFileSync(tmp('hosts'), 'utf8')).toBe('127.0.0.1 localhost\n');
  });

  describe('run-training.sh', () => {
    // The rendered wrapper and env file in a node home of their own whose venv has a fake torchrun: it records its
    // arguments, working directory and environment, starts a "rank" that sleeps, and exits with FAKE_EXIT (or waits).
    const fake = () => tmp('fake-node');
    const pids = () => fs.readFileSync(path.join(fake(), 'pids'), 'utf8').trim().split(' ').map(Number);

    beforeAll(() => {
      fs.mkdirSync(path.join(fake(), 'bin'), { recursive: true });
      fs.mkdirSync(path.join(fake(), 'venv', 'bin'), { recursive: true });
      fs.copyFileSync(path.join(home(), 'bin', 'run-training.sh'), path.join(fake(), 'bin', 'run-training.sh'));
      fs.chmodSync(path.join(fake(), 'bin', 'run-training.sh'), 0o755);
      const env = fs.readFileSync(path.join(home(), 'training.env'), 'utf8');
      fs.writeFileSync(
        path.join(fake(), 'training.env'),
        env.replace(/^RECSYS_VENV=.*$/m, `RECSYS_VENV=${path.join(fake(), 'venv')}`),
      );
      fs.writeFileSync(
        path.join(fake(), 'venv', 'bin', 'torchrun'),
        [
          '#!/usr/bin/env bash',
          '[[ -n "${FAKE_IGNORE_TERM:-}" ]] && trap "" TERM',
          'printf "%s\\n" "$*" > "$FAKE_DIR/args"',
          'pwd > "$FAKE_DIR/cwd"',
          'env > "$FAKE_DIR/env"',
          'sleep 300 &',
          'echo "$$ $!" > "$FAKE_DIR/pids.tmp" && mv "$FAKE_DIR/pids.tmp" "$FAKE_DIR/pids"',
          '[[ -n "${FAKE_EXIT:-}" ]] && exit "$FAKE_EXIT"',
          'wait',
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
    });

    beforeEach(() => fs.rmSync(path.join(fake(), 'pids'), { force: true }));

    afterAll(() => {
      // Safety net only (the tests assert these are gone): never leave a sleeper behind.
      if (!fs.existsSync(path.join(fake(), 'pids'))) return;
      for (const pid of pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });

    /** Starts the wrapper with stdin open, as the controller's ssh does. */
    function start(args: string[], env: Record<string, string> = {}) {
      const child = spawn(path.join(fake(), 'bin', 'run-training.sh'), args, {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, FAKE_DIR: fake(), ...env },
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      return { child, exited, stderr: () => stderr };
    }

    test('runs torchrun from the code directory with the rendezvous settings and exits with its code', async () => {
      const run = start(['--rdzv-id', 'run42', '--', '--epochs', '1'], { FAKE_EXIT: '7', NPROC_PER_NODE: '2' });
      expect(await run.exited).toBe(7);
      expect(fs.readFileSync(path.join(fake(), 'args'), 'utf8').trim()).toBe(
        '--nnodes 2 --node_rank 0 --nproc_per_node 2 --rdzv-backend static --rdzv-endpoint 10.99.0.10:29500 ' +
          '--rdzv-id run42 -m models.train --epochs 1',
      );
      expect(fs.readFileSync(path.join(fake(), 'cwd'), 'utf8').trim()).toBe(path.join(home(), 'code'));
      const env = fs.readFileSync(path.join(fake(), 'env'), 'utf8');
      expect(env).toMatch(/^GLOO_SOCKET_IFNAME=lo$/m);
      expect(env).toMatch(/^OMP_NUM_THREADS=1$/m);
      expect(env).toMatch(new RegExp(`^PYTHONPATH=${home()}/code$`, 'm'));
      expect(env).toMatch(new RegExp(`^RECSYS_SUPERVISOR_PID=${run.child.pid}$`, 'm'));
      // The rank that outlived its torchrun went with the process group.
      const [, rank] = pids();
      await until('the leftover rank to be killed', () => !alive(rank!));
    });

    test('refuses to start without a rendezvous id', async () => {
      const run = start(['--epochs', '1']);
      expect(await run.exited).toBe(2);
      expect(run.stderr()).toContain('a rendezvous id is required');
      expect(fs.existsSync(path.join(fake(), 'pids'))).toBe(false);
    });

    test('stops torchrun and its ranks when stdin reaches EOF (the ssh client died)', async () => {
      const run = start(['--rdzv-id=run43'], { RDZV_ID: 'ignored-when-a-flag-is-given' });
      await until('the fake torchrun to start', () => fs.existsSync(path.join(fake(), 'pids')));
      const [torchrun, rank] = pids();
      expect(alive(torchrun!) && alive(rank!)).toBe(true);
      run.child.stdin.end();
      expect(await run.exited).toBe(143); // torchrun's own status: killed by SIGTERM
      expect(run.stderr()).toContain('stdin closed: stopping torchrun');
      await until('torchrun and its rank to be gone', () => !alive(torchrun!) && !alive(rank!), 3000);
      expect(fs.readFileSync(path.join(fake(), 'args'), 'utf8')).toContain('--rdzv-id run43 ');
    });

    test('stops the group on SIGTERM, with SIGKILL for ranks that ignore it', async () => {
      const run = start([], { RDZV_ID: 'run44', FAKE_IGNORE_TERM: '1' });
      await until('the fake torchrun to start', () => fs.existsSync(path.join(fake(), 'pids')));
      const [torchrun, rank] = pids();
      const started = Date.now();
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(137); // SIGKILLed after the grace period
      expect(Date.now() - started).toBeGreaterThanOrEqual(GRACE_SECONDS * 1000);
      expect(run.stderr()).toContain('SIGTERM: stopping torchrun');
      expect(run.stderr()).toContain(`outlived SIGTERM by ${GRACE_SECONDS}s: SIGKILL`);
      await until('torchrun and its rank to be gone', () => !alive(torchrun!) && !alive(rank!), 3000);
      // The wrapper's stdin watcher went with it: nothing of this run is left but zombies awaiting their reaper.
      run.child.stdin.end();
    });
  });
});
