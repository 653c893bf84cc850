/**
 * clouds.yaml is found where openstacksdk looks, in its order, and read into a validated cloud; every error names the
 * file and the field, and no secret reaches a message, JSON or util.inspect.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import {
  cloudsYamlCandidates,
  CloudsYamlError,
  findCloudsYaml,
  loadCloud,
  type LookupOptions,
} from '../../../../lib/chameleon/clouds-yaml';

const SECRET = 'hunter2-very-secret-value';
const chameleonFile = (name = 'openstack', extra = '') => `clouds:
  ${name}:
    auth:
      auth_url: https://chi.tacc.chameleoncloud.org:5000
      application_credential_id: "c0ffee00app00cred00id"
      application_credential_secret: "${SECRET}"
    region_name: "CHI@TACC"
    interface: "public"
    identity_api_version: 3
    auth_type: "v3applicationcredential"
${extra}`;

let root: string;
let dirs: { cwd: string; home: string; site: string; xdg: string };
const opts = (env: NodeJS.ProcessEnv = {}): LookupOptions => ({
  env,
  cwd: dirs.cwd,
  home: dirs.home,
  siteDir: dirs.site,
});
const write = (file: string, content: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
};
const userFile = () => path.join(dirs.home, '.config', 'openstack', 'clouds.yaml');
const failure = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
};

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'clouds-yaml-'));
  dirs = {
    cwd: path.join(root, 'cwd'),
    home: path.join(root, 'home'),
    site: path.join(root, 'etc-openstack'),
    xdg: path.join(root, 'xdg'),
  };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

describe('lookup order', () => {
  test('the candidates are the working directory, the user config dir, then the system dir', () => {
    const c = cloudsYamlCandidates(opts({ XDG_CONFIG_HOME: dirs.xdg })).filter((f) => f.endsWith('.yaml'));
    expect(c).toEqual([
      path.join(dirs.cwd, 'clouds.yaml'),
      path.join(dirs.xdg, 'openstack', 'clouds.yaml'),
      path.join(dirs.home, '.config', 'openstack', 'clouds.yaml'),
      path.join(dirs.site, 'clouds.yaml'),
    ]);
  });

  test('each location wins over the ones after it, and OS_CLIENT_CONFIG_FILE over all', () => {
    const site = write(path.join(dirs.site, 'clouds.yaml'), chameleonFile());
    expect(findCloudsYaml(opts())).toBe(site);
    const user = write(userFile(), chameleonFile());
    expect(findCloudsYaml(opts())).toBe(user);
    const cwd = write(path.join(dirs.cwd, 'clouds.yml'), chameleonFile());
    expect(findCloudsYaml(opts())).toBe(cwd);
    const override = write(path.join(root, 'elsewhere', 'my-clouds.yaml'), chameleonFile());
    expect(findCloudsYaml(opts({ OS_CLIENT_CONFIG_FILE: override }))).toBe(override);
  });

  test('OS_CLIENT_CONFIG_FILE naming a missing file is an error, not a silent fallback', () => {
    write(userFile(), chameleonFile());
    const missing = path.join(root, 'nope.yaml');
    const err = failure(() => findCloudsYaml(opts({ OS_CLIENT_CONFIG_FILE: missing })));
    expect(err.message).toBe(`${missing}: does not exist (named by OS_CLIENT_CONFIG_FILE)`);
  });

  test('no file anywhere lists where it looked', () => {
    const err = failure(() => findCloudsYaml(opts()));
    expect(err.message).toContain('no clouds.yaml found');
    expect(err.message).toContain(path.join(dirs.cwd, 'clouds.yaml'));
    expect(err.message).toContain(path.join(dirs.site, 'clouds.yaml'));
  });
});

describe('reading a cloud', () => {
  test("Chameleon's application credential file", () => {
    const file = write(userFile(), chameleonFile());
    const cloud = loadCloud(undefined, opts());
    expect(cloud).toMatchObject({
      cloud: 'openstack',
      file,
      authUrl: 'https://chi.tacc.chameleoncloud.org:5000',
      regionName: 'CHI@TACC',
      interface: 'public',
      auth: { type: 'v3applicationcredential', id: 'c0ffee00app00cred00id' },
    });
    expect(cloud.auth.type === 'v3applicationcredential' && cloud.auth.secret.reveal()).toBe(SECRET);
  });

  test('the secret stays out of JSON, inspect and string interpolation', () => {
    write(userFile(), chameleonFile());
    const cloud = loadCloud(undefined, opts());
    const auth = cloud.auth.type === 'v3applicationcredential' ? cloud.auth : undefined;
    expect(JSON.stringify(cloud)).not.toContain(SECRET);
    expect(inspect(cloud, { depth: 10 })).not.toContain(SECRET);
    expect(`${String(auth?.secret)}`).toBe('[secret]');
  });

  test('the cloud is the one named, else OS_CLOUD, else the only one', () => {
    write(userFile(), chameleonFile('chi-tacc', chameleonFile('chi-uc').replace('clouds:\n', '')));
    expect(loadCloud('chi-uc', opts()).cloud).toBe('chi-uc');
    expect(loadCloud(undefined, opts({ OS_CLOUD: 'chi-tacc' })).cloud).toBe('chi-tacc');
    const err = failure(() => loadCloud(undefined, opts()));
    expect(err.message).toBe(`${userFile()}: field 'clouds' holds 2 clouds (chi-tacc, chi-uc): name one with OS_CLOUD`);
    expect(failure(() => loadCloud('kvm', opts())).message).toBe(
      `${userFile()}: field 'clouds' has no cloud named "kvm" (clouds: chi-tacc, chi-uc)`,
    );
  });

  test('password auth is read with its project scope and default domains', () => {
    write(
      userFile(),
      `clouds:
  lab:
    auth_type: password
    auth:
      auth_url: https://keystone.example.org/v3
      username: alice
      password: "${SECRET}"
      project_name: CHI-123456
    interface: internalURL
`,
    );
    const cloud = loadCloud(undefined, opts());
    expect(cloud.interface).toBe('internal');
    expect(cloud.regionName).toBeUndefined();
    expect(cloud.auth).toMatchObject({
      type: 'password',
      user: { name: 'alice', domainName: 'Default' },
      project: { name: 'CHI-123456', domainName: 'Default' },
    });
  });
});

describe('errors name the file and the field, never the secret', () => {
  const errorFor = (content: string) => {
    write(userFile(), content);
    const err = failure(() => loadCloud(undefined, opts()));
    expect(err.message).not.toContain(SECRET);
    return err;
  };

  test('a missing secret', () => {
    const err = errorFor(chameleonFile().replace(/ {6}application_credential_secret.*\n/, ''));
    expect(err).toBeInstanceOf(CloudsYamlError);
    expect(err.message).toBe(
      `${userFile()}: field 'clouds.openstack.auth.application_credential_secret' is missing (required for an application credential)`,
    );
  });

  test('a missing auth_url', () => {
    const err = errorFor(chameleonFile().replace(/ {6}auth_url.*\n/, ''));
    expect(err.message).toBe(`${userFile()}: field 'clouds.openstack.auth.auth_url' is missing`);
  });

  test('a secret YAML reads as a number is refused without quoting it', () => {
    const err = errorFor(chameleonFile().replace(`"${SECRET}"`, '12345e6'));
    expect(err.message).toBe(
      `${userFile()}: field 'clouds.openstack.auth.application_credential_secret' must be a string (quote it in the YAML)`,
    );
    expect(err.message).not.toContain('12345');
  });

  test('an unsupported auth_type and interface name their values', () => {
    expect(errorFor(chameleonFile().replace('"v3applicationcredential"', 'v3oidcpassword')).message).toBe(
      `${userFile()}: field 'clouds.openstack.auth_type' is not supported (value: "v3oidcpassword"); use v3applicationcredential or password`,
    );
    expect(errorFor(chameleonFile().replace('interface: "public"', 'interface: "private"')).message).toBe(
      `${userFile()}: field 'clouds.openstack.interface' must be public, internal or admin (value: "private")`,
    );
  });

  test('a YAML syntax error gives the line, not the line itself', () => {
    const err = errorFor(chameleonFile().replace(`"${SECRET}"`, `"${SECRET}`));
    expect(err.message).toMatch(
      new RegExp(`^${userFile().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: is not valid YAML: line \\d+: `),
    );
  });

  test('a file that is not a clouds.yaml', () => {
    expect(errorFor('foo: 1\n').message).toBe(`${userFile()}: field 'clouds' is missing: not a clouds.yaml`);
  });
});
