/** `recsys status <workflowId>`: a training workflow's steps (the `progress` query) and the running activity. */
import type { Command } from 'commander';
import type { continuousTraining } from '../../workflows/continuous-training';
import { progressQuery } from '../../workflows/training-api';
import { printResult } from './train';
import { duration, table } from '../format';
import { pendingActivities, temporalClient, webUiUrl } from '../temporal';

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show the steps of a continuousTraining workflow and the progress of the running one')
    .argument('<workflowId>', 'e.g. train-two-tower-ml-100k-ml-100k-20261122T040749Z or retrain-<model>')
    .option('--wait', 'wait for the workflow to end and print its result', false)
    .action(async (workflowId: string, opts: { wait: boolean }) => {
      const client = await temporalClient();
      const handle = client.workflow.getHandle<typeof continuousTraining>(workflowId);
      if (opts.wait) {
        console.log(`Waiting for ${workflowId}: ${webUiUrl(workflowId)}`);
        printResult(await handle.result());
        return;
      }
      const desc = await handle.describe();
      console.log(`${workflowId}: ${desc.status.name}`);
      const progress = await handle.query(progressQuery);
      console.log(
        table(
          ['step', 'status', 'time', 'summary'],
          progress.steps.map((s) => [
            s.name,
            s.status,
            s.seconds === undefined ? '' : duration(s.seconds),
            s.summary ?? '',
          ]),
        ),
      );
      for (const act of await pendingActivities(handle)) {
        console.log(`running: ${act.type} (attempt ${act.attempt}) ${JSON.stringify(act.heartbeat ?? {})}`);
        if (act.lastFailure) console.log(`  the last attempt failed: ${act.lastFailure}`);
      }
      console.log(`Web UI: ${webUiUrl(workflowId, desc.runId)}`);
    });
}
