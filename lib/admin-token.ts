/**
 * The shared secret of recsys.v1.Admin: every admin caller sends it as gRPC metadata and the serving tier refuses calls
 * without it, so that binding 127.0.0.1 is not the only thing between any local process and production's traffic
 * policy. It comes from RECSYS_ADMIN_TOKEN, or else from `$RECSYS_STACK_DIR/admin-token`, which whoever needs it first
 * (a server, the CLI, a deployment activity) generates with mode 0600. Servers and callers started from the same
 * environment (replicas inherit it) therefore agree without any flag.
 *
 * Synchronous on purpose: a few hundred bytes read once per client or server, and callers that create gRPC clients
 * synchronously can use it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { stackDirOf } from './config';

export const ADMIN_TOKEN_ENV = 'RECSYS_ADMIN_TOKEN';
/** gRPC metadata key the token travels in, as `Bearer <token>` (what grpcurl -H 'authorization: ...' sends). */
export const ADMIN_TOKEN_METADATA = 'authorization';
export const MIN_TOKEN_LENGTH = 16;

export const adminTokenFile = (env: NodeJS.ProcessEnv = process.env): string =>
  path.join(stackDirOf(env), 'admin-token');

/** A string saying what is wrong with a token, or undefined when it can be used. */
function problemOf(token: string, source: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH)
    return `${source} is too short (${token.length} characters; at least ${MIN_TOKEN_LENGTH}, e.g. \`openssl rand -hex 32\`)`;
  // It travels as a metadata value: printable ASCII only, and no spaces so that `Bearer <token>` parses one way.
  if (!/^[\x21-\x7e]+$/.test(token)) return `${source} must be printable ASCII without spaces`;
  return undefined;
}

function readTokenFile(file: string): string {
  const st = fs.statSync(file);
  if (!st.isFile()) throw new Error(`admin token ${file} is not a regular file`);
  // Like ssh with private keys: a token others can read is no secret, so refuse rather than use it.
  if ((st.mode & 0o077) !== 0)
    throw new Error(
      `admin token ${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
    );
  if (typeof process.getuid === 'function' && st.uid !== process.getuid())
    throw new Error(`admin token ${file} belongs to uid ${st.uid}, not to this user (uid ${process.getuid()})`);
  const token = fs.readFileSync(file, 'utf8').trim();
  const problem = problemOf(token, `admin token ${file}`);
  if (problem) throw new Error(`${problem}; delete it to have a new one generated`);
  return token;
}

/**
 * Creates the token file if there is none: written in full under a temporary name, then hard-linked to its final name,
 * which fails if another process got there first, so concurrent first uses all end up with the same token and nobody
 * ever reads a half-written file.
 */
function createTokenFile(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      fs.writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * The admin token: RECSYS_ADMIN_TOKEN when set, else the stack directory's token file, generated on first use.
 * Throws naming the variable or file when the token there is unusable.
 */
export function adminToken(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[ADMIN_TOKEN_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const problem = problemOf(fromEnv, ADMIN_TOKEN_ENV);
    if (problem) throw new Error(problem);
    return fromEnv;
  }
  const file = adminTokenFile(env);
  if (!fs.existsSync(file)) createTokenFile(file);
  return readTokenFile(file);
}

/** Where the token comes from, for messages (never the token itself). */
export function adminTokenSource(env: NodeJS.ProcessEnv = process.env): string {
  return env[ADMIN_TOKEN_ENV] ? `$${ADMIN_TOKEN_ENV}` : adminTokenFile(env);
}
