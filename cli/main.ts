/** `recsys`: the command line of the platform. */
import { Command } from 'commander';
import { registerClusterCommand } from './commands/cluster';
import { registerDriftCommand } from './commands/drift';
import { registerEventCommand } from './commands/event';
import { registerFeaturesCommand } from './commands/features';
import { registerRecommendCommand } from './commands/recommend';
import { registerRetrainCommand } from './commands/retrain';
import { registerRolloutCommand } from './commands/rollout';
import { registerScheduleCommand } from './commands/schedule';
import { registerServeCommand } from './commands/serve';
import { registerSimulateCommand } from './commands/simulate';
import { registerStatusCommand } from './commands/status';
import { registerTrainCommand } from './commands/train';

const program = new Command('recsys').description('MLOps for recommender systems on Temporal');
registerTrainCommand(program);
registerStatusCommand(program);
registerServeCommand(program);
registerRecommendCommand(program);
registerEventCommand(program);
registerRolloutCommand(program);
registerScheduleCommand(program);
registerSimulateCommand(program);
registerDriftCommand(program);
registerRetrainCommand(program);
registerFeaturesCommand(program);
registerClusterCommand(program);

program.parseAsync(process.argv).then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    console.error(`recsys: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
