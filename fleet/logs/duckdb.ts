/**
 * How the log readers open DuckDB: in memory, and never reaching out for an extension (the npm build lacks httpfs and
 * the machines have no route to DuckDB's extension site: an s3:// path must fail here, not hang or download). Log
 * chunks are always read from local files (chunk-cache.ts).
 */

/** Options for DuckDBInstance.create: no extension is installed or loaded behind our back. */
export const duckdbOptions = (): Record<string, string> => ({
  autoinstall_known_extensions: 'false',
  autoload_known_extensions: 'false',
});

/** A SQL string literal. */
export const sqlString = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/**
 * A SQL list of local file paths for read_json. DuckDB expands glob characters in paths and would read URLs through
 * extensions, so anything but a plain local path is refused, naming it.
 */
export function sqlFileList(files: readonly string[]): string {
  for (const f of files)
    if (/[*?[\]{}]/.test(f) || /^[a-z][a-z0-9+.-]*:\/\//i.test(f))
      throw new Error(`log reader: ${JSON.stringify(f)} is not a plain local file path (globs and URLs are refused)`);
  return `[${files.map(sqlString).join(', ')}]`;
}
