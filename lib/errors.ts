/** Errors that name what is wrong and where, so a user can fix their input without reading our code. */

/** One problem in a raw input file: which file, which line (or row), which field, which value. */
export interface InputProblem {
  file: string;
  /** 1-based line number for text formats, 1-based row number for Parquet. */
  line: number;
  field: string;
  value: string;
  message: string;
}

export function formatProblem(p: InputProblem): string {
  return `${p.file}:${p.line}: field '${p.field}' ${p.message} (value: ${JSON.stringify(p.value)})`;
}

/** Raw data that failed validation. Carries the first problems found (bounded) and the total count. */
export class DataValidationError extends Error {
  override readonly name = 'DataValidationError';
  constructor(
    readonly problems: InputProblem[],
    readonly totalProblems: number,
  ) {
    const head = problems.slice(0, 5).map(formatProblem).join('\n  ');
    const more = totalProblems > 5 ? `\n  ... and ${totalProblems - 5} more` : '';
    super(`invalid input: ${totalProblems} problem(s)\n  ${head}${more}`);
  }
}

/** A configuration value that cannot be used. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`config field '${field}' ${reason} (value: ${JSON.stringify(value)})`);
  }
}
