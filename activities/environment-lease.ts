/** Which rollout holds an environment's lease (workflows/environment-lease.ts), for a rollout that waits for it. */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';

export function environmentLeaseActivities() {
  return {
    /** The workflow id of the rollout holding the lease, or undefined when nobody holds it. */
    leaseHolder: async (input: { leaseId: string }): Promise<string | undefined> => {
      try {
        const lease = await Context.current().client.workflow.getHandle(input.leaseId).describe();
        if (lease.status.name !== 'RUNNING') return undefined;
        return lease.parentExecution?.workflowId ?? lease.workflowId;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return undefined;
        throw err;
      }
    },
  };
}
