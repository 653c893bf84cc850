/**
 * How the MLflow client authenticates, read from the variables MLflow's own clients read: MLFLOW_TRACKING_USERNAME
 * and MLFLOW_TRACKING_PASSWORD (HTTP Basic, MLflow's built-in auth app) or MLFLOW_TRACKING_TOKEN (Bearer, e.g. a
 * gateway or a managed server). When both are set, Basic wins, as in MLflow's Python client. Nothing set: no header,
 * as the local stack expects.
 */

export type MlflowAuth =
  { kind: 'basic'; username: string; password: string } | { kind: 'bearer'; token: string } | { kind: 'none' };

const set = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
};

export function loadMlflowAuth(env: NodeJS.ProcessEnv = process.env): MlflowAuth {
  const username = set(env, 'MLFLOW_TRACKING_USERNAME');
  const password = set(env, 'MLFLOW_TRACKING_PASSWORD');
  // MLflow ignores half a pair and sends nothing; a 401 later would not say why, so say it now.
  if ((username === undefined) !== (password === undefined))
    throw new Error(
      `environment variable ${username === undefined ? 'MLFLOW_TRACKING_PASSWORD' : 'MLFLOW_TRACKING_USERNAME'} is set ` +
        `but ${username === undefined ? 'MLFLOW_TRACKING_USERNAME' : 'MLFLOW_TRACKING_PASSWORD'} is not: Basic auth needs both`,
    );
  if (username !== undefined && password !== undefined) {
    if (username.includes(':'))
      throw new Error(
        `environment variable MLFLOW_TRACKING_USERNAME must not contain ':' (HTTP Basic), got ${JSON.stringify(username)}`,
      );
    return { kind: 'basic', username, password };
  }
  const token = set(env, 'MLFLOW_TRACKING_TOKEN');
  return token !== undefined ? { kind: 'bearer', token } : { kind: 'none' };
}

/** The headers that authenticate one request (none for `none`). */
export function authHeaders(auth: MlflowAuth): Record<string, string> {
  switch (auth.kind) {
    case 'basic':
      return {
        authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`, 'utf8').toString('base64')}`,
      };
    case 'bearer':
      return { authorization: `Bearer ${auth.token}` };
    case 'none':
      return {};
  }
}

/** How the auth is named in messages (never its secret). */
export function describeMlflowAuth(auth: MlflowAuth): string {
  switch (auth.kind) {
    case 'basic':
      return `Basic auth as ${JSON.stringify(auth.username)} (MLFLOW_TRACKING_USERNAME)`;
    case 'bearer':
      return 'a Bearer token (MLFLOW_TRACKING_TOKEN)';
    case 'none':
      return 'no credentials (set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)';
  }
}
