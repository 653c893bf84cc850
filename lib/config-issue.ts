/**
 * A failed zod parse of a config as the ConfigError users see: the first issue, its field as a path under the
 * config's scope (`drift.persistence.k`, `sources[1].rating`) and the value found there. One rule for every
 * declarative config (validation, drift, sources), so they all name what is wrong the same way.
 */
import type { z } from 'zod';
import { ConfigError } from './errors';

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

const fieldOf = (scope: string, path: readonly PropertyKey[]) =>
  path.reduce<string>(
    (at, k) => (typeof k === 'number' ? `${at}[${k}]` : at === '' ? String(k) : `${at}.${String(k)}`),
    scope,
  );

export function configIssue(
  scope: string,
  input: unknown,
  error: z.ZodError,
  /** The reason given for an unknown key, by the path of the object that has it (default: not a known setting). */
  unknownKey: (objectPath: string) => string = () => 'is not a known setting',
): ConfigError {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const objectPath = issue.path.map(String).join('.');
    return new ConfigError(
      fieldOf(scope, [...issue.path, key]),
      valueAt(input, [...issue.path, key]),
      unknownKey(objectPath),
    );
  }
  const reason = issue.message.charAt(0).toLowerCase() + issue.message.slice(1);
  return new ConfigError(fieldOf(scope, issue.path) || scope, valueAt(input, issue.path), reason);
}
