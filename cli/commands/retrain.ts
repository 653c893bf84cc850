/**
 * `recsys retrain <model>`: retrain a model now, as drift monitors and schedules do: `continuousTraining` under the
 * model's one retrain id (`retrain-<model>`), planned from the champion's recipe plus the production feedback served
 * since its data. A retrain already running absorbs the request (nothing new starts), whoever started it.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { config } from '../../lib/config';
import { checkModelName } from '../../lib/model-name';
import { RecsysModel, RecsysTrigger } from '../../lib/search-attributes';
import { continuousTraining } from '../../workflows/continuous-training';
import { retrainWorkflowId } from '../../workflows/retrain-api';
import { parseOverrides } from '../schedule-spec';
import { temporalClient, webUiUrl } from '../temporal';
import { printResult } from './train';

export function registerRetrainCommand(program: Command): void {
  program
    .command('retrain <model>')
    .description("retrain now from the champion's recipe plus the served feedback (one retrain per model at a time)")
    .option('--overrides <json>', 'what to change from the recipe: {"validation":..., "gates":..., "rollout":...}')
    .option('--wait', 'wait for the training and print its result', false)
    .action(async (model: string, opts: { overrides?: string; wait: boolean }) => {
      checkModelName(model);
      const retrain = opts.overrides === undefined ? undefined : parseOverrides('--overrides', opts.overrides);
      const client = await temporalClient();
      const workflowId = retrainWorkflowId(model);
      try {
        await client.workflow.start(continuousTraining, {
          workflowId,
          taskQueue: config().taskQueue,
          args: [
            {
              model,
              trigger: 'manual',
              retrain,
              cause: { requestedBy: `recsys retrain (${os.userInfo().username}@${os.hostname()})` },
            },
          ],
          staticSummary: `Retrain of ${model} (manual)`,
          typedSearchAttributes: [
            { key: RecsysModel, value: model },
            { key: RecsysTrigger, value: 'manual' },
          ],
        });
        console.log(`Started ${workflowId}: ${webUiUrl(workflowId)}`);
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
        console.log(`${workflowId} is already running: this request is absorbed by it (${webUiUrl(workflowId)})`);
      }
      if (opts.wait) printResult(await client.workflow.getHandle<typeof continuousTraining>(workflowId).result());
    });
}
