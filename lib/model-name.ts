/**
 * Registered model names: also a segment of object-store keys (`training/<model>/...`) and of workflow ids, so they
 * are checked before they are used as either (a `../` or a `/` must never reach a key).
 */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class ModelNameError extends Error {
  override name = 'ModelNameError';
}

export function checkModelName(name: string): string {
  if (!MODEL_NAME.test(name) || name.includes('..'))
    throw new ModelNameError(
      `model name ${JSON.stringify(name)} must match ${String(MODEL_NAME)} (letters, digits, '.', '_', '-'; no '..')`,
    );
  return name;
}
