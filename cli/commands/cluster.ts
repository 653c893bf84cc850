/**
 * `recsys cluster sweep|sweeper|status`: the training clusters this controller provisioned. `sweep` runs the sweeper
 * now (destroys clusters whose owning workflow is gone); `sweeper --every 15m` keeps it on a Temporal Schedule;
 * `status <workflow-id>` shows a provisioning's phase, nodes and node-hours.
 */
import type { Command } from 'commander';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import { config } from '../../lib/config';
import { clusterSweeper } from '../../workflows/cluster-sweeper';
import { CLUSTER_SWEEPER_SCHEDULE_ID, clusterStateQuery } from '../../workflows/provision-api';
import { table } from '../format';
import { temporalClient } from '../temporal';

export function registerClusterCommand(program: Command): void {
  const cluster = program.command('cluster').description('provisioned training clusters (local-cluster, chameleon)');

  cluster
    .command('sweep')
    .description('destroy every cluster whose owning workflow is no longer running, now')
    .option('--dry-run', 'only list what would be destroyed', false)
    .action(async (opts: { dryRun: boolean }) => {
      const client = await temporalClient();
      const swept = await client.workflow.execute(clusterSweeper, {
        taskQueue: config().taskQueue,
        workflowId: `cluster-sweep-${new Date().toISOString()}`,
        args: [{ dryRun: opts.dryRun }],
      });
      if (swept.length === 0) return console.log('Nothing to sweep: every cluster belongs to a running workflow.');
      console.log(
        table(
          ['cluster', 'owner', 'why', opts.dryRun ? 'would remove' : 'removed'],
          swept.map((s) => [s.clusterId, s.owner ?? '-', s.reason, s.removed.join(', ') || '(dry run)']),
        ),
      );
    });

  cluster
    .command('sweeper')
    .description(`run the sweeper on a Temporal Schedule (${CLUSTER_SWEEPER_SCHEDULE_ID})`)
    .option('--every <interval>', 'how often, e.g. 15m', '15m')
    .action(async (opts: { every: string }) => {
      const client = await temporalClient();
      const action = {
        type: 'startWorkflow' as const,
        workflowType: clusterSweeper,
        taskQueue: config().taskQueue,
        workflowId: 'cluster-sweep',
        args: [{}] as [{ dryRun?: boolean }],
      };
      const spec = { intervals: [{ every: opts.every }] };
      const handle = client.schedule.getHandle(CLUSTER_SWEEPER_SCHEDULE_ID);
      const exists = await handle.describe().then(
        () => true,
        () => false,
      );
      if (exists) await handle.update((prev) => ({ ...prev, spec, action }));
      else
        await client.schedule.create({
          scheduleId: CLUSTER_SWEEPER_SCHEDULE_ID,
          spec,
          action,
          policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
        });
      console.log(`Schedule ${CLUSTER_SWEEPER_SCHEDULE_ID}: the sweeper runs every ${opts.every}.`);
    });

  cluster
    .command('status <workflowId>')
    .description("a provisioning's phase, nodes, node-hours and step times (provision-<training workflow id>)")
    .action(async (workflowId: string) => {
      const client = await temporalClient();
      const s = await client.workflow.getHandle(workflowId).query(clusterStateQuery);
      console.log(`${s.target} cluster ${s.clusterId}: ${s.phase}, nodes ${s.nodes.join(', ') || '-'}`);
      console.log(`node-hours: ${s.nodeHours.toFixed(4)}`);
      if (s.steps.length)
        console.log(
          table(
            ['step', 'seconds'],
            s.steps.map((t) => [t.step, t.seconds.toFixed(1)]),
          ),
        );
      if (s.undone.length) console.log(`released: ${s.undone.join(' → ')}`);
      if (s.undoFailed.length) console.log(`NOT released: ${s.undoFailed.join('; ')}`);
    });
}
