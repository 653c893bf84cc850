/** Every activity the workers register. Workflows import this module as a type only. */
export { etl } from './etl';
export { validateDataset } from './data-validation';
export { train } from './training';
export { evaluate } from './evaluation';
export { exportOnnx } from './export';
export { quantize } from './quantization';
export { checkGates } from './gates';
export { register, currentChampion, describeVersion, tagVersion, promote, restoreChampion } from './registry';
export {
  ensureEnvironment,
  setTrafficWeights,
  environmentState,
  stopEnvironment,
  setFault,
  scrapeVersionMetrics,
  runLoadTest,
} from './deploy';
export { analyseCanaryWindow } from './rollout-analysis';
