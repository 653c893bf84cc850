/** Temporal client helpers for the CLI: connection, Web UI links, live progress. */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { config } from '../lib/config';
import { temporalConnectionOptions } from '../lib/temporal-connection';

export async function temporalClient(): Promise<Client> {
  const cfg = config();
  const connection = await Connection.connect(temporalConnectionOptions(cfg.temporal));
  return new Client({ connection, namespace: cfg.temporalNamespace });
}

export function webUiUrl(workflowId: string, runId?: string): string {
  const cfg = config();
  const base = `${cfg.temporalUiUrl}/namespaces/${cfg.temporalNamespace}/workflows/${encodeURIComponent(workflowId)}`;
  return runId ? `${base}/${runId}/history` : base;
}

export interface PendingActivity {
  type: string;
  attempt: number;
  heartbeat?: unknown;
  /** Why the previous attempt failed, while a retry is pending or running. */
  lastFailure?: string;
}

/** The running activities of a workflow, with their last heartbeat details decoded. */
export async function pendingActivities(handle: WorkflowHandle): Promise<PendingActivity[]> {
  const desc = await handle.describe();
  return (desc.raw.pendingActivities ?? []).map((a) => {
    const payload = a.heartbeatDetails?.payloads?.[0];
    return {
      type: a.activityType?.name ?? '?',
      attempt: a.attempt ?? 1,
      heartbeat: payload ? defaultPayloadConverter.fromPayload(payload) : undefined,
      lastFailure: a.lastFailure?.message ?? undefined,
    };
  });
}
