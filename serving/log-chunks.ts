/**
 * Turns buffered log entries into chunks: grouped by partition (kind, model, the server's environment, UTC hour),
 * serialised as JSON lines, and given their final key at once, so that every later attempt to upload a chunk writes
 * the same object.
 */
import { chunkKey, partitionOf } from './log-layout';
import type { LogEntry, LogKind } from './log-records';

export interface LogChunk {
  /** Relative to the log prefix; see log-layout.ts. */
  key: string;
  kind: LogKind;
  records: number;
  body: string;
  sealedAtMs: number;
}

/** Who seals: the server's id (unique per process) and its environment (`staging`, `production`, `adhoc`, ...). */
export interface SealingServer {
  serverId: string;
  env: string;
}

export function sealChunks(
  entries: readonly LogEntry[],
  server: SealingServer,
  nextSeq: () => number,
  sealedAtMs: number,
): LogChunk[] {
  const groups = new Map<string, { kind: LogKind; lines: string[] }>();
  for (const e of entries) {
    const partition = partitionOf(e.kind, e.record.model_name, server.env, e.record.time_ms);
    let group = groups.get(partition);
    if (!group) groups.set(partition, (group = { kind: e.kind, lines: [] }));
    group.lines.push(JSON.stringify({ time: new Date(e.record.time_ms).toISOString(), ...e.record }));
  }
  return [...groups].map(([partition, g]) => ({
    key: chunkKey(partition, server.serverId, nextSeq()),
    kind: g.kind,
    records: g.lines.length,
    body: `${g.lines.join('\n')}\n`,
    sealedAtMs,
  }));
}
