/** The workflow bundle entry: every workflow the workers run. */
export { continuousTraining } from './continuous-training';
export { rollout } from './rollout';
