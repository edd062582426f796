/** What the io modules need to know about where they run. */

/** Imports a module by a computed name, so bundlers leave Node's modules out of browser builds. */
export async function importDynamic(specifier: string): Promise<any> {  // eslint-disable-line
  return import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);
}

/** Whether this is Node (file paths can be read). */
export function isNode(): boolean {
  const p = (globalThis as {process?: {versions?: {node?: string}}}).process;
  return typeof p?.versions?.node === 'string';
}
