/** Why a model version could not be put into service. The serving version (if any) is untouched by such a failure. */

/** The step of loading that failed, in the order they run; `deadline` when the whole load took too long. */
export type LoadStage =
  'resolve' | 'download' | 'checksum' | 'session' | 'signature' | 'catalog' | 'warmup' | 'deadline';

export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
  constructor(
    /** `models:/name@alias`, or `models:/name/version` once resolved. */
    readonly model: string,
    readonly stage: LoadStage,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot load ${model}: ${stage}: ${reason}`, options);
  }
}

/** The message of anything thrown, for error strings. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
