/**
 * Reading an HF checkpoint folder — config.json, model.safetensors or
 * model.safetensors.index.json + shards, tokenizer files — from a Node folder or a base URL.
 *
 * Over HTTP each shard's header is read first (two Range requests), then only the byte ranges
 * of the tensors the model needs, shard by shard, adjacent tensors in one request of at most
 * RANGE_CHUNK_BYTES; each tensor is handed on as it arrives, so neither a whole shard nor a
 * float32 copy of the model is held. A server that ignores Range (200 instead of 206) gets a
 * warning and the file is read whole, once.
 */
import {importDynamic, isNode, NodeFileHandle, readFileRange} from '../io/runtime.js';
import {isSupportedSafetensorsDtype, parseSafetensorsHeader, readSafetensorsHeaderLength, SafetensorsEntry} from '../io/safetensors.js';

/** Adjacent tensors are read in one request up to this many bytes (a larger tensor alone). */
export const RANGE_CHUNK_BYTES = 32 * 1024 * 1024;

/** One file of a checkpoint, read by byte ranges. */
interface RangeFile {
  /** Names the file in errors (its path or URL). */
  readonly where: string;
  /** Bytes in the file, when known (an HTTP server may not say before the first read). */
  size(): number|null;
  /** Exactly `length` bytes from `offset`; an Error naming the file when it has fewer. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** What the bytes of a load cost: for tests and the progress display. */
export interface LoadStats {
  /** Bytes received (headers, tensors, JSON files). */
  bytesRead: number;
  /** Reads (HTTP requests or file reads). */
  requests: number;
  /** Files a server sent whole because it ignored Range. */
  wholeFileReads: string[];
}

/** Where a checkpoint's files come from. */
export interface CheckpointFolder {
  /** The folder or base URL, for messages. */
  readonly where: string;
  readonly stats: LoadStats;
  /** A small file's text; null when `optional` and it does not exist. */
  readText(name: string, optional: boolean): Promise<string|null>;
  open(name: string): Promise<RangeFile>;
}

type FetchFunction = typeof fetch;

function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source) || (!isNode() && !/^[a-z]:\\/i.test(source));
}

/**
 * The folder or base URL `source`: http(s) URLs (anywhere fetch exists; in a browser any string
 * is a URL, resolved against the page), otherwise (Node) a folder path.
 */
export async function openCheckpointFolder(source: string|URL, fetchFn?: FetchFunction): Promise<CheckpointFolder> {
  if (source instanceof URL) return urlFolder(source.href, fetchFn);
  if (typeof source !== 'string' || source.length === 0) {
    throw new Error(`loadCausalLM source: expected a folder path (Node) or a base URL, got ${String(source)}`);
  }
  return isUrl(source) ? urlFolder(source, fetchFn) : fileFolder(source);
}

// ---- Node folders ------------------------------------------------------------------------------

interface NodeFsPromises {
  open(path: string, flags: string): Promise<NodeFileHandle>;
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  stat(path: string): Promise<{isDirectory(): boolean}>;
}

async function fileFolder(folder: string): Promise<CheckpointFolder> {
  const fs = await importDynamic('node:fs/promises') as NodeFsPromises;
  const isDirectory = await fs.stat(folder).then((s) => s.isDirectory(), () => false);
  if (!isDirectory) {
    throw new Error(`loadCausalLM source: '${folder}' is not a folder (expected a checkpoint folder ` +
                    `holding config.json, or an http(s) URL)`);
  }
  const pathOf = (name: string) => `${folder.replace(/[\\/]+$/, '')}/${name}`;
  const stats: LoadStats = {bytesRead: 0, requests: 0, wholeFileReads: []};
  return {
    where: folder,
    stats,
    async readText(name, optional) {
      try {
        const text = await fs.readFile(pathOf(name), 'utf8');
        stats.requests++;
        stats.bytesRead += text.length;
        return text;
      } catch (e) {
        if (optional && (e as {code?: string}).code === 'ENOENT') return null;
        throw new Error(`loadCausalLM: cannot read ${pathOf(name)}: ${(e as Error).message}`);
      }
    },
    async open(name) {
      const where = pathOf(name);
      let handle: NodeFileHandle;
      try {
        handle = await fs.open(where, 'r');
      } catch (e) {
        throw new Error(`loadCausalLM: cannot open ${where}: ${(e as Error).message}`);
      }
      const size = (await handle.stat()).size;
      return {
        where,
        size: () => size,
        async read(offset, length) {
          const {bytes, bytesRead} = await readFileRange(handle, offset, length);
          stats.requests++;
          stats.bytesRead += bytesRead;
          if (bytesRead < length) throw truncated(where, offset, length, bytesRead);
          return bytes;
        },
        close: () => handle.close(),
      };
    },
  };
}

function truncated(where: string, offset: number, length: number, got: number): Error {
  return new Error(`loadCausalLM: ${where} is truncated: expected ${length} bytes at offset ${offset}, ` +
                   `got ${got}`);
}

// ---- URLs ----------------------------------------------------------------------------------------

function urlFolder(source: string, fetchFn: FetchFunction|undefined): CheckpointFolder {
  const fetcher = fetchFn ?? (globalThis as {fetch?: FetchFunction}).fetch;
  if (typeof fetcher !== 'function') {
    throw new Error(`loadCausalLM: '${source}' is a URL but this runtime has no fetch (pass options.fetch)`);
  }
  const pageUrl = (globalThis as {location?: {href?: string}}).location?.href;
  const base = new URL(source.endsWith('/') ? source : `${source}/`, pageUrl);
  const stats: LoadStats = {bytesRead: 0, requests: 0, wholeFileReads: []};
  const get = async (url: string, headers: Record<string, string>): Promise<Response> => {
    stats.requests++;
    try {
      return await fetcher(url, {headers});
    } catch (e) {
      throw new Error(`loadCausalLM: fetching ${url} failed: ${(e as Error).message} (offline, or a ` +
                      `server without CORS headers for this page?)`);
    }
  };
  const body = async (response: Response): Promise<Uint8Array> => {
    const bytes = new Uint8Array(await response.arrayBuffer());
    stats.bytesRead += bytes.byteLength;
    return bytes;
  };
  return {
    where: base.href,
    stats,
    async readText(name, optional) {
      const url = new URL(name, base).href;
      const response = await get(url, {});
      if (response.status === 404 && optional) {
        await response.body?.cancel();
        return null;
      }
      if (!response.ok) throw httpError(url, response);
      return new TextDecoder().decode(await body(response));
    },
    async open(name) {
      const url = new URL(name, base).href;
      let size: number|null = null;
      let whole: Uint8Array|null = null;  // the file, when the server ignored Range
      return {
        where: url,
        size: () => size,
        async read(offset, length) {
          if (whole === null) {
            const response = await get(url, {Range: `bytes=${offset}-${offset + length - 1}`});
            if (response.status === 206) {
              size = totalOfContentRange(response.headers.get('Content-Range')) ?? size;
              const bytes = await body(response);
              if (bytes.byteLength < length) throw truncated(url, offset, length, bytes.byteLength);
              return bytes.subarray(0, length);
            }
            if (response.status === 416) {
              await response.body?.cancel();
              throw truncated(url, offset, length, 0);
            }
            if (!response.ok) throw httpError(url, response);
            // 200: the server ignores Range and sent the whole file.
            console.warn(`loadCausalLM: ${url} was sent whole (the server ignores HTTP Range ` +
                         `requests); reading it in one piece`);
            stats.wholeFileReads.push(url);
            whole = await body(response);
            size = whole.byteLength;
          }
          if (offset + length > whole.byteLength) {
            throw truncated(url, offset, length, Math.max(0, whole.byteLength - offset));
          }
          return whole.subarray(offset, offset + length);
        },
        async close() {
          whole = null;
        },
      };
    },
  };
}

function httpError(url: string, response: Response): Error {
  void response.body?.cancel();
  return new Error(`loadCausalLM: ${url}: HTTP ${response.status}${response.statusText ? ' ' + response.statusText : ''}`);
}

/** The total of a `Content-Range: bytes a-b/total` header, null when absent or '*'. */
function totalOfContentRange(header: string|null): number|null {
  const match = header === null ? null : /\/(\d+)\s*$/.exec(header);
  return match === null ? null : Number(match[1]);
}

// ---- The checkpoint's tensors ---------------------------------------------------------------

/** One tensor of the checkpoint: where it is and what it holds. */
export interface CheckpointTensor {
  name: string;
  file: string;
  entry: SafetensorsEntry;
}

/** A tensor's bytes, as they arrive. */
export type TensorSink = (tensor: CheckpointTensor, bytes: Uint8Array) => void;

/** The checkpoint's weight files: 'model.safetensors', or the shards of the index. */
async function weightMap(folder: CheckpointFolder, needed: Iterable<string>): Promise<Map<string, string>> {
  const indexText = await folder.readText('model.safetensors.index.json', true);
  const out = new Map<string, string>();
  if (indexText === null) {
    for (const name of needed) out.set(name, 'model.safetensors');
    return out;
  }
  let index: unknown;
  try {
    index = JSON.parse(indexText);
  } catch (e) {
    throw new Error(`loadCausalLM: ${folder.where}model.safetensors.index.json is not valid JSON: ${(e as Error).message}`);
  }
  const map = (index as {weight_map?: unknown})?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new Error(`loadCausalLM: ${folder.where}model.safetensors.index.json: expected a weight_map object`);
  }
  for (const name of needed) {
    const file = (map as Record<string, unknown>)[name];
    if (typeof file !== 'string') {
      throw new Error(`loadCausalLM: tensor '${name}' is missing from model.safetensors.index.json's ` +
                      `weight_map (${folder.where})`);
    }
    if (file.includes('..') || file.startsWith('/')) {
      throw new Error(`loadCausalLM: model.safetensors.index.json maps '${name}' to '${file}', ` +
                      `expected a file name in the checkpoint folder`);
    }
    out.set(name, file);
  }
  return out;
}

/**
 * Reads the tensors `expected` (HF name → shape) from the checkpoint, shard by shard, and hands
 * each to `sink` as its bytes arrive. Every header is read and every needed tensor checked
 * (present, a supported dtype, the expected shape) before any tensor data is read. `progress`
 * sees the tensor bytes read so far and the total.
 */
export async function readCheckpointTensors(
    folder: CheckpointFolder, expected: Map<string, number[]>, sink: TensorSink,
    progress: (loadedBytes: number, totalBytes: number, file: string) => void): Promise<void> {
  const files = await weightMap(folder, expected.keys());
  const byFile = new Map<string, CheckpointTensor[]>();
  for (const file of files.values()) {
    if (!byFile.has(file)) byFile.set(file, []);
  }
  const opened: Array<{file: string, handle: RangeFile, dataStart: number}> = [];
  const closed = new Set<RangeFile>();
  try {
    for (const file of [...byFile.keys()].sort()) {
      const handle = await folder.open(file);
      opened.push({file, handle, dataStart: 0});
      const first8 = await handle.read(0, 8);
      const headerLength = readSafetensorsHeaderLength(first8, handle.where, handle.size() ?? Number.MAX_SAFE_INTEGER);
      const headerBytes = new Uint8Array(8 + headerLength);
      headerBytes.set(first8);
      headerBytes.set(await handle.read(8, headerLength), 8);
      const header = parseSafetensorsHeader(headerBytes, handle.where, handle.size() ?? Number.MAX_SAFE_INTEGER);
      opened[opened.length - 1].dataStart = header.dataStart;
      for (const [name, f] of files) {
        if (f !== file) continue;
        const entry = header.tensors.get(name);
        if (entry === undefined) {
          throw new Error(`loadCausalLM: ${handle.where} has no tensor '${name}'` +
                          (f === 'model.safetensors' ? '' : ' (model.safetensors.index.json says it is there)'));
        }
        const shape = expected.get(name)!;
        if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
          throw new Error(`loadCausalLM: ${handle.where}: tensor '${name}' has shape ` +
                          `[${entry.shape.join(', ')}], expected [${shape.join(', ')}] (from config.json)`);
        }
        if (!isSupportedSafetensorsDtype(entry.dtype)) {
          throw new Error(`loadCausalLM: ${handle.where}: tensor '${name}' has dtype ${entry.dtype}; ` +
                          `supported: BF16, F16, F32`);
        }
        byFile.get(file)!.push({name, file, entry});
      }
    }
    const totalBytes = [...byFile.values()].flat()
        .reduce((sum, t) => sum + t.entry.dataOffsets[1] - t.entry.dataOffsets[0], 0);
    let loadedBytes = 0;
    progress(0, totalBytes, opened[0]?.handle.where ?? folder.where);
    for (const {file, handle, dataStart} of opened) {
      for (const run of adjacentRuns(byFile.get(file)!)) {
        const begin = run[0].entry.dataOffsets[0];
        const end = run[run.length - 1].entry.dataOffsets[1];
        let bytes: Uint8Array;
        try {
          bytes = await handle.read(dataStart + begin, end - begin);
        } catch (e) {
          const names = run.map((t) => `'${t.name}'`).join(', ');
          throw new Error(`${(e as Error).message} (reading tensor${run.length > 1 ? 's' : ''} ${names})`);
        }
        for (const tensor of run) {
          const [a, b] = tensor.entry.dataOffsets;
          sink(tensor, bytes.subarray(a - begin, b - begin));
        }
        loadedBytes += end - begin;
        progress(loadedBytes, totalBytes, handle.where);
      }
      // Done with this shard: a whole-file fallback's bytes go now, not at the end.
      closed.add(handle);
      await handle.close();
    }
  } finally {
    await Promise.all(opened.filter(({handle}) => !closed.has(handle)).map(({handle}) => handle.close()));
  }
}

/** The tensors in file order, grouped into runs of adjacent byte ranges of ≤ RANGE_CHUNK_BYTES. */
function adjacentRuns(tensors: CheckpointTensor[]): CheckpointTensor[][] {
  const sorted = [...tensors].sort((a, b) => a.entry.dataOffsets[0] - b.entry.dataOffsets[0]);
  const runs: CheckpointTensor[][] = [];
  for (const tensor of sorted) {
    const run = runs[runs.length - 1];
    const [begin, end] = tensor.entry.dataOffsets;
    if (run !== undefined && run[run.length - 1].entry.dataOffsets[1] === begin &&
        end - run[0].entry.dataOffsets[0] <= RANGE_CHUNK_BYTES) {
      run.push(tensor);
    } else {
      runs.push([tensor]);
    }
  }
  return runs;
}
