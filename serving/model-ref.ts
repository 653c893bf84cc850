/**
 * Which registered model version to serve: `models:/<name>@<alias>` (what serving normally follows, so a promotion
 * needs no redeploy) or `models:/<name>/<version>` (pinned, for rollouts and rollbacks), as MLflow writes them.
 */
export type ModelRef = { name: string; alias: string; version?: undefined } | { name: string; version: string };

const URI = /^models:\/([^@/]+)(?:@([A-Za-z0-9_-]+)|\/(\d+))$/;
const BARE = /^([^@/:]+)(?:@([A-Za-z0-9_-]+))?$/;

/** Parses `models:/name@alias`, `models:/name/3`, `name@alias` or `name` (then `defaultAlias`). */
export function parseModelRef(spec: string, defaultAlias = 'champion'): ModelRef {
  const uri = URI.exec(spec);
  if (uri?.[1]) return uri[3] ? { name: uri[1], version: uri[3] } : { name: uri[1], alias: uri[2]! };
  const bare = BARE.exec(spec);
  if (bare?.[1]) return { name: bare[1], alias: bare[2] ?? defaultAlias };
  throw new Error(
    `not a model reference: ${JSON.stringify(spec)} (expected models:/<name>@<alias>, models:/<name>/<version> or <name>)`,
  );
}

export function formatModelRef(ref: ModelRef): string {
  return ref.version !== undefined ? `models:/${ref.name}/${ref.version}` : `models:/${ref.name}@${ref.alias}`;
}
