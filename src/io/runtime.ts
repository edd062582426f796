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

/** The parts of Node's `fs/promises` FileHandle the io modules use (typed here: no @types/node). */
export interface NodeFileHandle {
  stat(): Promise<{size: number, isFile(): boolean}>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{bytesRead: number}>;
  close(): Promise<void>;
}

/**
 * Up to `length` bytes of `handle` from `offset` (fewer only at the end of the file): `bytes`
 * holds `length` bytes of which the first `bytesRead` were read.
 */
export async function readFileRange(handle: NodeFileHandle, offset: number, length: number):
    Promise<{bytes: Uint8Array, bytesRead: number}> {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const {bytesRead} = await handle.read(bytes, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return {bytes, bytesRead: done};
}
