/**
 * Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
 *
 * ```
 * [8 bytes: N, little-endian u64] [N bytes: UTF-8 JSON header] [data block]
 * header = {name: {dtype, shape, data_offsets: [begin, end]}, …, "__metadata__"?: {str: str}}
 * ```
 *
 * `data_offsets` are relative to the start of the data block. BF16, F16 and F32 tensors load
 * as float32 tensors (exactly: every bf16/f16 value is a float32 value), or with `keepHalf`
 * BF16/F16 ones as PackedHalfTensors (the file's bits); other dtypes are rejected. Every header field is checked first, so a truncated or hostile file gives an
 * Error naming the file, the tensor, what was expected and what was found, never a wrong
 * tensor or an allocation larger than the file.
 */
import * as tf from '@tensorflow/tfjs-core';
import {floatToBf16Bits, floatToF16Bits, HalfDtype, halfValue} from '../precision/half.js';
import {PackedHalfTensor} from '../precision/packed.js';
import {importDynamic, isNode, NodeFileHandle, readFileRange} from './runtime.js';

/** What loadSafetensors reads from: the file's bytes, or a file path (Node only). */
export type SafetensorsSource = ArrayBuffer|Uint8Array|string;

export interface LoadSafetensorsOptions {
  /**
   * Keep only the tensors whose names start with this prefix, and remove it from the names,
   * e.g. `'model.layers.3.self_attn.'` → `{'q_a_proj.weight': …, …}` for `loadStateDict`.
   * Only those tensors are decoded (and, for a file path, read); the whole header is
   * still validated.
   */
  prefix?: string;
  /**
   * Return BF16 and F16 tensors as PackedHalfTensors: the file's 16-bit values as they are,
   * two per int32 word, with no float32 copy, for `loadStateDict` of a layer with `dtype`
   * 'bfloat16' / 'float16' (which stores a matching one as it is, and widens any other).
   * Tensors whose last dim is odd (and scalars) cannot be packed and load as float32 tensors;
   * F32 tensors stay float32. Default false: everything loads as float32.
   */
  keepHalf?: boolean;
}

/** What loadSafetensors returns with `keepHalf: true`. */
export type SafetensorsWeights = Record<string, tf.Tensor|PackedHalfTensor>;

/** One entry of a safetensors header, validated. */
export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data block. */
  dataOffsets: [number, number];
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** The tensors in header order. */
  tensors: Map<string, SafetensorsEntry>;
  /** `__metadata__` (string → string), {} when absent. */
  metadata: Record<string, string>;
  /** Byte offset of the data block in the file: 8 + the header length. */
  dataStart: number;
  /** Bytes in the data block (file size − dataStart). */
  dataLength: number;
}

/** The dtypes loadSafetensors decodes (to float32; BF16/F16 kept packed with `keepHalf`). */
export const SUPPORTED_SAFETENSORS_DTYPES = ['BF16', 'F16', 'F32'] as const;
export type SupportedSafetensorsDtype = typeof SUPPORTED_SAFETENSORS_DTYPES[number];

/** Bits per element of the dtypes the safetensors format defines (used to check sizes). */
const DTYPE_BITS: Record<string, number> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64,
  C64: 64,
};

/** Headers longer than this are rejected (the official library's limit is 100 MB too). */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

// ---- Byte sources ----------------------------------------------------------------------------

/** Random access to the bytes of a file or a buffer. */
interface ByteSource {
  /** Names the source in error messages. */
  readonly what: string;
  readonly size: number;
  /** Exactly `length` bytes from `offset` (the caller checked the range). */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

function memorySource(bytes: Uint8Array, what: string): ByteSource {
  return {
    what,
    size: bytes.byteLength,
    read: async (offset, length) => bytes.subarray(offset, offset + length),
    close: async () => {},
  };
}

async function fileSource(path: string): Promise<ByteSource> {
  const what = `safetensors file '${path}'`;
  if (!isNode()) {
    throw new Error(`loadSafetensors: a string source is a file path and is only supported in ` +
                    `Node; in a browser pass the file's bytes (e.g. ` +
                    `await (await fetch(url)).arrayBuffer()), got '${path}'`);
  }
  const fs = await importDynamic('node:fs/promises') as {
    open(path: string, flags: string): Promise<NodeFileHandle>,
  };
  let handle: NodeFileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (e) {
    throw new Error(`loadSafetensors: cannot open ${what}: ${(e as Error).message}`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`loadSafetensors: ${what} is not a regular file`);
    return {
      what,
      size: stat.size,
      async read(offset, length) {
        const {bytes, bytesRead} = await readFileRange(handle, offset, length);
        if (bytesRead < length) {
          throw new Error(`loadSafetensors: ${what} ended at byte ${offset + bytesRead} while reading ` +
                          `${length} bytes from ${offset} (was it changed while being read?)`);
        }
        return bytes;
      },
      close: () => handle.close(),
    };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

// ---- Header ----------------------------------------------------------------------------------

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array (${JSON.stringify(value).slice(0, 80)})`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 80))}`;
  return `${typeof value} ${String(value)}`;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Reads and validates the header of a safetensors file held in `bytes` (the data block need
 * not be present when `fileSize` is given). `what` names the file in error messages.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, what = 'safetensors buffer',
                                       fileSize = bytes.byteLength): SafetensorsHeader {
  if (fileSize < 8) {
    throw new Error(`loadSafetensors: ${what} is ${fileSize} bytes, shorter than the 8-byte ` +
                    `header length that starts a safetensors file`);
  }
  if (bytes.byteLength < 8) {
    throw new Error(`loadSafetensors: ${what}: expected at least the 8-byte header length, got ` +
                    `${bytes.byteLength} bytes`);
  }
  const headerLength = readSafetensorsHeaderLength(bytes, what, fileSize);
  if (bytes.byteLength < 8 + headerLength) {
    throw new Error(`loadSafetensors: ${what}: expected ${8 + headerLength} bytes of header, ` +
                    `got ${bytes.byteLength}`);
  }
  return parseHeaderJson(bytes.subarray(8, 8 + headerLength), what, fileSize);
}

/**
 * The header length in a file's first 8 bytes, checked against the file's size (`fileSize`) and
 * the format's limits; an Error naming `what` otherwise.
 */
export function readSafetensorsHeaderLength(first8: Uint8Array, what: string, fileSize: number): number {
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const low = view.getUint32(0, true);
  const high = view.getUint32(4, true);
  const headerLength = high * 2 ** 32 + low;  // exact below 2^53; larger ones fail the checks
  if (headerLength > MAX_SAFETENSORS_HEADER_BYTES) {
    throw new Error(`loadSafetensors: ${what}: header length ${headerLength} bytes is absurd ` +
                    `(expected at most ${MAX_SAFETENSORS_HEADER_BYTES}); not a safetensors file?`);
  }
  if (8 + headerLength > fileSize) {
    throw new Error(`loadSafetensors: ${what}: header length ${headerLength} bytes goes beyond ` +
                    `the end of the file (${fileSize} bytes); truncated or not a safetensors file?`);
  }
  if (headerLength < 2) {
    throw new Error(`loadSafetensors: ${what}: header length ${headerLength} bytes, expected at ` +
                    `least 2 (a JSON object)`);
  }
  return headerLength;
}

function parseHeaderJson(headerBytes: Uint8Array, what: string, fileSize: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', {fatal: true}).decode(headerBytes);
  } catch {
    throw new Error(`loadSafetensors: ${what}: the header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`loadSafetensors: ${what}: the header is not valid JSON ` +
                    `(${(e as Error).message}); starts with ${JSON.stringify(text.slice(0, 60))}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`loadSafetensors: ${what}: the header must be a JSON object, got ${describeValue(json)}`);
  }
  const dataStart = 8 + headerBytes.byteLength;
  const dataLength = fileSize - dataStart;
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = checkMetadata(raw, what);
      continue;
    }
    tensors.set(name, checkEntry(name, raw, what, dataLength));
  }
  checkOverlaps(tensors, what);
  return {tensors, metadata, dataStart, dataLength};
}

function checkMetadata(raw: unknown, what: string): Record<string, string> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`loadSafetensors: ${what}: __metadata__ must be an object of strings, got ` +
                    describeValue(raw));
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      throw new Error(`loadSafetensors: ${what}: __metadata__['${key}'] must be a string, got ` +
                      describeValue(value));
    }
    out[key] = value;
  }
  return out;
}

function checkEntry(name: string, raw: unknown, what: string, dataLength: number): SafetensorsEntry {
  const where = `${what}: tensor '${name}'`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`loadSafetensors: ${where}: expected an object {dtype, shape, data_offsets}, ` +
                    `got ${describeValue(raw)}`);
  }
  const entry = raw as Record<string, unknown>;
  for (const field of ['dtype', 'shape', 'data_offsets']) {
    if (!(field in entry)) throw new Error(`loadSafetensors: ${where}: missing '${field}'`);
  }
  const {dtype, shape, data_offsets: offsets} = entry;
  if (typeof dtype !== 'string') {
    throw new Error(`loadSafetensors: ${where}: dtype must be a string, got ${describeValue(dtype)}`);
  }
  if (!Array.isArray(shape)) {
    throw new Error(`loadSafetensors: ${where}: shape must be an array of integers ≥ 0, got ` +
                    describeValue(shape));
  }
  for (const [i, dim] of shape.entries()) {
    if (!isNonNegativeInteger(dim)) {
      throw new Error(`loadSafetensors: ${where}: shape[${i}] must be an integer ≥ 0, got ` +
                      `${describeValue(dim)} (shape ${JSON.stringify(shape)})`);
    }
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new Error(`loadSafetensors: ${where}: data_offsets must be [begin, end], got ` +
                    describeValue(offsets));
  }
  const [begin, end] = offsets as unknown[];
  if (!isNonNegativeInteger(begin) || !isNonNegativeInteger(end)) {
    throw new Error(`loadSafetensors: ${where}: data_offsets must be two integers ≥ 0, got ` +
                    JSON.stringify(offsets));
  }
  if (begin > end) {
    throw new Error(`loadSafetensors: ${where}: data_offsets [${begin}, ${end}] begin after they end`);
  }
  if (end > dataLength) {
    throw new Error(`loadSafetensors: ${where}: data_offsets [${begin}, ${end}] go beyond the data ` +
                    `block (${dataLength} bytes); truncated file?`);
  }
  const bits = DTYPE_BITS[dtype];
  if (bits !== undefined) {
    // Sizes are checked against the byte range, so no product can ask for more than the file.
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const expectedBytes = count * bits / 8;
    if (expectedBytes !== end - begin) {
      throw new Error(`loadSafetensors: ${where}: data_offsets [${begin}, ${end}] hold ${end - begin} ` +
                      `bytes, expected ${expectedBytes} (shape ${JSON.stringify(shape)}, ${count} ` +
                      `elements of ${dtype}, ${bits / 8} bytes each)`);
    }
  }
  return {dtype, shape: [...shape as number[]], dataOffsets: [begin, end]};
}

function checkOverlaps(tensors: Map<string, SafetensorsEntry>, what: string): void {
  const ranges = [...tensors].filter(([, e]) => e.dataOffsets[1] > e.dataOffsets[0])
      .sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  for (let i = 1; i < ranges.length; i++) {
    const [prevName, prev] = ranges[i - 1];
    const [name, cur] = ranges[i];
    if (cur.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new Error(`loadSafetensors: ${what}: tensors '${prevName}' [${prev.dataOffsets.join(', ')}] ` +
                      `and '${name}' [${cur.dataOffsets.join(', ')}] overlap; expected disjoint byte ranges`);
    }
  }
}

// ---- Decoding --------------------------------------------------------------------------------

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const halfTables: Partial<Record<HalfDtype, Float32Array>> = {};

/** float32 values of all 65536 bit patterns of `dtype` (half.ts's exact widening), built once. */
function halfTable(dtype: HalfDtype): Float32Array {
  let table = halfTables[dtype];
  if (table === undefined) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfValue(h, dtype);
    halfTables[dtype] = table;
  }
  return table;
}

/** The float32 values of `count` elements of `dtype` in `bytes` (any alignment, a fresh array). */
export function decodeSafetensorsValues(bytes: Uint8Array, dtype: SupportedSafetensorsDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) {
      new Uint8Array(out.buffer).set(bytes);  // a copy: handles any alignment, frees the file
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    }
  } else {
    const table = halfTable(SAFETENSORS_HALF_DTYPES[dtype]);
    for (let i = 0; i < count; i++) out[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  }
  return out;
}

/** The 16-bit safetensors dtypes and the package's names for them. */
export const SAFETENSORS_HALF_DTYPES = {BF16: 'bfloat16', F16: 'float16'} as const;

/**
 * One selected tensor as loadSafetensors returns it: BF16/F16 with `keepHalf` and an even last
 * dim as a PackedHalfTensor of the file's bits, anything else as float32.
 */
function decodeTensor(bytes: Uint8Array, entry: SafetensorsEntry, keepHalf: boolean): tf.Tensor|PackedHalfTensor {
  const dtype = entry.dtype as SupportedSafetensorsDtype;
  const {shape} = entry;
  if (keepHalf && dtype !== 'F32' && shape.length > 0 && shape[shape.length - 1] % 2 === 0) {
    return PackedHalfTensor.fromLittleEndianBits(bytes, SAFETENSORS_HALF_DTYPES[dtype], shape);
  }
  return tf.tensor(decodeSafetensorsValues(bytes, dtype, shape.reduce((a, b) => a * b, 1)), shape, 'float32');
}

/** Whether loadSafetensors decodes `dtype` (BF16, F16, F32). */
export function isSupportedSafetensorsDtype(dtype: string): dtype is SupportedSafetensorsDtype {
  return (SUPPORTED_SAFETENSORS_DTYPES as readonly string[]).includes(dtype);
}

/**
 * Loads the tensors of a safetensors file as float32 tensors on the active backend.
 *
 * `source` is the file's bytes (an ArrayBuffer, or a Uint8Array, which may be a view into a
 * larger buffer), or in Node a file path (read with `node:fs/promises`; only the header and
 * the selected tensors are read, so a prefix picks one layer out of a multi-GB shard).
 * BF16, F16 and F32 are widened to float32 exactly; any other dtype of a selected tensor is
 * an Error. With `keepHalf: true`, BF16/F16 tensors come back as PackedHalfTensors holding
 * the file's bits two per int32 word (half the bytes of float32, uploaded as they are; those
 * with an odd last dim, and scalars, still load as float32). A malformed header (truncated file, bad JSON, wrong field types, negative or
 * fractional dims, offsets out of range or overlapping, byte sizes that do not match the
 * shape) is an Error naming the file and the tensor. The caller owns the returned tensors.
 *
 * ```ts
 * const weights = await loadSafetensors('model-00001-of-000004.safetensors',
 *                                       {prefix: 'model.layers.0.self_attn.'});
 * layer.loadStateDict(weights);
 * Object.values(weights).forEach((t) => t.dispose());
 * ```
 */
export async function loadSafetensors(source: SafetensorsSource,
                                      options: LoadSafetensorsOptions&{keepHalf: true}): Promise<SafetensorsWeights>;
export async function loadSafetensors(source: SafetensorsSource,
                                      options?: LoadSafetensorsOptions&{keepHalf?: false}): Promise<Record<string, tf.Tensor>>;
export async function loadSafetensors(source: SafetensorsSource,
                                      options?: LoadSafetensorsOptions): Promise<SafetensorsWeights>;
export async function loadSafetensors(source: SafetensorsSource,
                                      options: LoadSafetensorsOptions = {}): Promise<SafetensorsWeights> {
  const prefix = options?.prefix ?? '';
  if (typeof prefix !== 'string') {
    throw new Error(`loadSafetensors prefix: expected a string, got ${describeValue(prefix)}`);
  }
  const keepHalf = options?.keepHalf ?? false;
  if (typeof keepHalf !== 'boolean') {
    throw new Error(`loadSafetensors keepHalf: expected a boolean, got ${describeValue(keepHalf)}`);
  }
  let bytes: ByteSource;
  if (typeof source === 'string') {
    bytes = await fileSource(source);
  } else if (ArrayBuffer.isView(source)) {
    // A Uint8Array (a Node Buffer included), possibly a view into a larger buffer.
    const view = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    bytes = memorySource(view, `safetensors buffer (${view.byteLength} bytes)`);
  } else if (source instanceof ArrayBuffer ||
             Object.prototype.toString.call(source) === '[object ArrayBuffer]') {
    const view = new Uint8Array(source as ArrayBuffer);
    bytes = memorySource(view, `safetensors buffer (${view.byteLength} bytes)`);
  } else {
    throw new Error(`loadSafetensors: expected an ArrayBuffer, a Uint8Array or a file path, got ` +
                    describeValue(source));
  }
  try {
    const what = bytes.what;
    if (bytes.size < 8) {
      throw new Error(`loadSafetensors: ${what} is ${bytes.size} bytes, shorter than the 8-byte ` +
                      `header length that starts a safetensors file`);
    }
    const headerLength = readSafetensorsHeaderLength(await bytes.read(0, 8), what, bytes.size);
    const header = parseHeaderJson(await bytes.read(8, headerLength), what, bytes.size);
    const selected: Array<[string, SafetensorsEntry]> = [];
    for (const [name, entry] of header.tensors) {
      if (!name.startsWith(prefix)) continue;
      if (!isSupportedSafetensorsDtype(entry.dtype)) {
        throw new Error(`loadSafetensors: ${what}: tensor '${name}' has dtype ${entry.dtype}; ` +
                        `supported: ${SUPPORTED_SAFETENSORS_DTYPES.join(', ')} (loaded as float32)`);
      }
      selected.push([name, entry]);
    }
    const out: SafetensorsWeights = {};
    try {
      for (const [name, entry] of selected) {
        const [begin, end] = entry.dataOffsets;
        const data = await bytes.read(header.dataStart + begin, end - begin);
        const key = name.slice(prefix.length);
        if (key in out) {
          // Unreachable for valid JSON (keys are unique), kept as a guard.
          throw new Error(`loadSafetensors: ${what}: tensor '${name}' appears twice`);
        }
        out[key] = decodeTensor(data, entry, keepHalf);
      }
    } catch (e) {
      Object.values(out).forEach((t) => t.dispose());
      throw e;
    }
    return out;
  } finally {
    await bytes.close();
  }
}

// ---- Encoding --------------------------------------------------------------------------------

/** A tensor for encodeSafetensors: values in row-major order, rounded to `dtype`. */
export interface SafetensorsTensorData {
  dtype: 'F32'|'F16'|'BF16';
  shape: number[];
  data: ArrayLike<number>;
}

const roundingScratch = new DataView(new ArrayBuffer(4));

/**
 * x rounded to float32 with round-to-odd: the float32 nearest toward zero, with its last bit
 * set when x is not a float32. Rounding that to a 16-bit format (nearest-even) gives the same
 * bits as rounding x directly (float32 keeps ≥ 2 more bits than bf16/f16 in every range they
 * cover), so half.ts's float32 conversions serve doubles without double rounding.
 */
function roundToOddFloat32(x: number): number {
  const f = Math.fround(x);
  if (f === x || !Number.isFinite(f) || Number.isNaN(x)) return f;
  roundingScratch.setFloat32(0, f);
  const bits = roundingScratch.getUint32(0);
  if ((bits & 1) === 1) return f;
  // f is even: x lies between f and its neighbor away from f toward x, which is odd.
  roundingScratch.setUint32(0, Math.abs(f) > Math.abs(x) ? bits - 1 : bits + 1);
  return roundingScratch.getFloat32(0);
}

/** f16 bits of x (round to nearest even, from x's exact value; half.ts's floatToF16Bits). */
export function float16Bits(x: number): number {
  return floatToF16Bits(roundToOddFloat32(x));
}

/** bf16 bits of x (round to nearest even, from x's exact value; half.ts's floatToBf16Bits). */
export function bfloat16Bits(x: number): number {
  return floatToBf16Bits(roundToOddFloat32(x));
}

/**
 * Writes tensors in the safetensors format (header padded with spaces to 8 bytes, data in
 * the order given). F16/BF16 values are rounded to nearest, ties to even; F32 as Math.fround.
 * `metadata` becomes `__metadata__` (strings only).
 */
export function encodeSafetensors(tensors: Record<string, SafetensorsTensorData>,
                                  metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new Error(`encodeSafetensors metadata['${key}']: expected a string, got ${describeValue(value)}`);
      }
    }
    header[METADATA_KEY] = {...metadata};
  }
  let offset = 0;
  const parts: Array<{begin: number, tensor: SafetensorsTensorData, itemSize: number}> = [];
  for (const [name, tensor] of Object.entries(tensors)) {
    if (name === METADATA_KEY) throw new Error(`encodeSafetensors: '${METADATA_KEY}' is not a tensor name`);
    const {dtype, shape, data} = tensor;
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
      throw new Error(`encodeSafetensors: tensor '${name}' dtype: expected 'F32', 'F16' or 'BF16', ` +
                      `got ${describeValue(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new Error(`encodeSafetensors: tensor '${name}' shape: expected integers ≥ 0, got ` +
                      JSON.stringify(shape));
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (data.length !== count) {
      throw new Error(`encodeSafetensors: tensor '${name}': shape ${JSON.stringify(shape)} holds ` +
                      `${count} values, got ${data.length}`);
    }
    const itemSize = dtype === 'F32' ? 4 : 2;
    header[name] = {dtype, shape: [...shape], data_offsets: [offset, offset + count * itemSize]};
    parts.push({begin: offset, tensor, itemSize});
    offset += count * itemSize;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const withSpaces = new Uint8Array(padded).fill(0x20);
    withSpaces.set(json);
    json = withSpaces;
  }
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, padded % 2 ** 32, true);
  view.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  const dataStart = 8 + padded;
  for (const {begin, tensor, itemSize} of parts) {
    const at = dataStart + begin;
    const {data, dtype} = tensor;
    for (let i = 0; i < data.length; i++) {
      if (dtype === 'F32') view.setFloat32(at + itemSize * i, data[i], true);
      else view.setUint16(at + itemSize * i, dtype === 'F16' ? float16Bits(data[i]) : bfloat16Bits(data[i]), true);
    }
  }
  return out;
}
