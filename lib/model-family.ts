/** The model family of a training config (`model` key of models/config.py's TrainConfig; two_tower by default). */
export const DEFAULT_FAMILY = 'two_tower';

export function familyOf(config: Record<string, unknown> | undefined): string {
  const family = config?.model;
  return typeof family === 'string' ? family : DEFAULT_FAMILY;
}
