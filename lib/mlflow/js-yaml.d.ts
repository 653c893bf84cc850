/**
 * js-yaml's `dump` (4.x, present in node_modules), which mlmodel.ts uses to write MLmodel and the environment files.
 * A local declaration because @types/js-yaml is not installed (lib/chameleon/js-yaml.d.ts declares `load`; the two
 * merge); delete this file if it ever is.
 */
declare module 'js-yaml' {
  export function dump(
    value: unknown,
    options?: { sortKeys?: boolean; lineWidth?: number; noRefs?: boolean; indent?: number },
  ): string;
}
