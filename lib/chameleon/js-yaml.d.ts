/**
 * The one function of js-yaml (4.x, present in node_modules) that clouds-yaml.ts uses. A local declaration because
 * @types/js-yaml is not installed; delete this file if it ever is.
 */
declare module 'js-yaml' {
  export function load(text: string, options?: { filename?: string; json?: boolean }): unknown;
}
