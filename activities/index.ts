/** Every activity the workers register. Workflows import this module as a type only. */
export { etl } from './etl';
export { train } from './training';
export { evaluate } from './evaluation';
export { exportOnnx } from './export';
export { register } from './registry';
