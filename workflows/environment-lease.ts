/**
 * environmentLease: one rollout at a time per serving environment. A rollout holds an environment by running this
 * workflow as its child under the environment's id (`env-lease-<env>-<port>`): a second rollout cannot start a child
 * with an id that is running, so it waits. The lease ends when its holder signals `release`, when the holder closes in
 * any way (the child's parent close policy terminates it, so a killed or terminated rollout cannot leak it), or after
 * `maxSeconds` as a last resort. The Web UI shows who holds what: search `RecsysStage="leased"`.
 */
import {
  condition,
  defineSignal,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RecsysStage } from '../lib/search-attributes';

export interface EnvironmentLeaseInput {
  env: string;
  /** The workflow id of the rollout that holds it. */
  holder: string;
  maxSeconds: number;
}

export const releaseLeaseSignal = defineSignal('release');

/** The meaningful id of an environment's lease: the environment and the port it serves on, on this machine. */
export const environmentLeaseId = (env: string, port: number) => `env-lease-${env}-${port}`;

export async function environmentLease(input: EnvironmentLeaseInput): Promise<{ released: 'signal' | 'expired' }> {
  let released = false;
  setHandler(releaseLeaseSignal, () => {
    released = true;
  });
  upsertSearchAttributes([{ key: RecsysStage, value: 'leased' }]);
  setCurrentDetails(
    `**${input.env}** held by \`${input.holder}\` since ${workflowInfo().startTime.toISOString()}; ` +
      `expires after ${input.maxSeconds} s at the latest`,
  );
  const bySignal = await condition(() => released, input.maxSeconds * 1000);
  upsertSearchAttributes([{ key: RecsysStage, value: 'released' }]);
  return { released: bySignal ? 'signal' : 'expired' };
}
