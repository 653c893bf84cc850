/**
 * A training cluster's id, derived from the workflow that owns it so a retried or replayed step finds the same lease,
 * nodes and state. Short and lowercase ([a-z0-9]{1,8}) because it becomes part of Linux interface names (15 bytes) and
 * lease names. Pure (FNV-1a), so workflow code can compute it.
 */
export const CLUSTER_ID = /^[a-z0-9]{1,8}$/;

export function clusterIdOf(key: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

export function checkClusterId(id: string): string {
  if (!CLUSTER_ID.test(id)) throw new Error(`cluster id must match ${CLUSTER_ID.source}, got ${JSON.stringify(id)}`);
  return id;
}
