import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {bfloat16Bits, encodeSafetensors, float16Bits, loadSafetensors, parseSafetensorsHeader} from '../../src/index.js';

// The host-only safetensors specs (parsing, validation, encoding; tensors on the cpu backend).
// The browser-only case and the golden layer from a file on every backend stay in
// test/safetensors.spec.ts.

/** A safetensors file from a header (an object, or raw JSON text) and a data block. */
function rawFile(header: unknown, data: ArrayLike<number> = [], headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength ?? json.byteLength, true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

/** Little-endian bytes of 16-bit patterns. */
function u16Bytes(bits: number[]): number[] {
  return bits.flatMap((b) => [b & 0xff, b >> 8]);
}

async function valuesOf(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function disposeAll(tensors: Record<string, tf.Tensor>): void {
  Object.values(tensors).forEach((t) => t.dispose());
}

/** Expects `load` to reject with an Error whose message matches every pattern, leaking nothing. */
async function expectLoadError(source: Uint8Array, patterns: RegExp[], prefix?: string): Promise<void> {
  const before = tf.memory().numTensors;
  let message = '';
  try {
    const got = await loadSafetensors(source, {prefix});
    disposeAll(got);
    fail(`expected an Error matching ${patterns.join(', ')}, got tensors ${Object.keys(got)}`);
    return;
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    message = (e as Error).message;
  }
  for (const pattern of patterns) expect(message).toMatch(pattern);
  expect(tf.memory().numTensors).withContext('numTensors after the error').toBe(before);
}

const F16_CASES: Array<[number, number]> = [
  [0x3e00, 1.5], [0xc080, -2.25], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
  [0x0400, 2 ** -14], [0x0000, 0], [0x8000, -0], [0x7c00, Infinity], [0xfc00, -Infinity],
  [0x3555, 0.333251953125], [0x8001, -(2 ** -24)],
];
const BF16_CASES: Array<[number, number]> = [
  [0x3fc0, 1.5], [0xc010, -2.25], [0x4049, 3.140625], [0x0000, 0], [0x8000, -0],
  [0x7f80, Infinity], [0xff80, -Infinity], [0x0001, 2 ** -133], [0x7f7f, 3.3895313892515355e38],
];

describe('safetensors: decoding', () => {
  it('widens F16 exactly (subnormals, ±0, ±Inf, NaN)', async () => {
    const bits = [...F16_CASES.map(([b]) => b), 0x7e00];
    const file = rawFile({h: {dtype: 'F16', shape: [bits.length], data_offsets: [0, 2 * bits.length]}},
                         u16Bytes(bits));
    const {h} = await loadSafetensors(file);
    expect(h.dtype).toBe('float32');
    expect(h.shape).toEqual([bits.length]);
    const got = await valuesOf(h);
    F16_CASES.forEach(([b, want], i) => expect(Object.is(got[i], want)).withContext(
        `f16 0x${b.toString(16)}: got ${got[i]}, expected ${want}`).toBe(true));
    expect(Number.isNaN(got[bits.length - 1])).withContext('f16 NaN').toBe(true);
    h.dispose();
  });

  it('widens BF16 exactly (the high half of a float32)', async () => {
    const bits = [...BF16_CASES.map(([b]) => b), 0x7fc0];
    const file = rawFile({b: {dtype: 'BF16', shape: [1, bits.length], data_offsets: [0, 2 * bits.length]}},
                         u16Bytes(bits));
    const {b} = await loadSafetensors(file);
    expect(b.shape).toEqual([1, bits.length]);
    const got = await valuesOf(b);
    BF16_CASES.forEach(([bb, want], i) => expect(Object.is(got[i], want)).withContext(
        `bf16 0x${bb.toString(16)}: got ${got[i]}, expected ${want}`).toBe(true));
    expect(Number.isNaN(got[bits.length - 1])).withContext('bf16 NaN').toBe(true);
    b.dispose();
  });

  it('reads F32 at an unaligned offset, from a Uint8Array view with an odd byteOffset', async () => {
    // One F16 element first: the F32 data starts 2 bytes into the data block.
    const f32 = new Float32Array([1.5, -2.25, 3.4028234663852886e38, -1e-45]);
    const data = [...u16Bytes([0x3c00]), ...new Uint8Array(f32.buffer)];
    const file = rawFile({one: {dtype: 'F16', shape: [], data_offsets: [0, 2]},
                          f: {dtype: 'F32', shape: [2, 2], data_offsets: [2, 18]}}, data);
    const big = new Uint8Array(file.byteLength + 10);
    big.set(file, 3);
    const view = big.subarray(3, 3 + file.byteLength);
    expect(view.byteOffset).toBe(3);
    const out = await loadSafetensors(view);
    expect(out.one.shape).toEqual([]);
    expect(await valuesOf(out.one)).toEqual([1]);
    expect(out.f.shape).toEqual([2, 2]);
    expect(await valuesOf(out.f)).toEqual(Array.from(f32));
    disposeAll(out);
    // The same bytes as an ArrayBuffer.
    const fromBuffer = await loadSafetensors(file.slice().buffer);
    expect(await valuesOf(fromBuffer.f)).toEqual(Array.from(f32));
    disposeAll(fromBuffer);
  });

  it('copies the data: later writes to the source do not change the tensors', async () => {
    const file = encodeSafetensors({w: {dtype: 'F32', shape: [2], data: [1, 2]}});
    const {w} = await loadSafetensors(file);
    file.fill(0, file.byteLength - 8);
    expect(await valuesOf(w)).toEqual([1, 2]);
    w.dispose();
  });

  it('selects and strips a prefix, decoding only those tensors', async () => {
    const p = 'model.layers.3.self_attn.';
    const file = rawFile({
      __metadata__: {format: 'pt'},
      [`${p}q_proj.weight`]: {dtype: 'F32', shape: [1, 2], data_offsets: [0, 8]},
      [`${p}kv_a_layernorm.weight`]: {dtype: 'BF16', shape: [2], data_offsets: [8, 12]},
      'model.layers.3.mlp.gate.e_score_correction_bias': {dtype: 'I64', shape: [1], data_offsets: [12, 20]},
      'model.layers.31.self_attn.q_proj.weight': {dtype: 'F8_E4M3', shape: [2], data_offsets: [20, 22]},
    }, [...new Uint8Array(new Float32Array([0.5, -4]).buffer), ...u16Bytes([0x3f80, 0xc000]),
        1, 0, 0, 0, 0, 0, 0, 0, 0x38, 0x38]);
    const out = await loadSafetensors(file, {prefix: p});
    expect(Object.keys(out).sort()).toEqual(['kv_a_layernorm.weight', 'q_proj.weight']);
    expect(await valuesOf(out['q_proj.weight'])).toEqual([0.5, -4]);
    expect(await valuesOf(out['kv_a_layernorm.weight'])).toEqual([1, -2]);
    disposeAll(out);
    // A prefix that matches nothing gives {}.
    expect(await loadSafetensors(file, {prefix: 'lm_head.'})).toEqual({});
    // Without the prefix the unsupported tensors are errors.
    await expectLoadError(file, [/tensor 'model\.layers\.3\.mlp\.gate\.e_score_correction_bias'/, /dtype I64/,
                                 /supported: BF16, F16, F32/]);
    // The header is validated whole, even outside the prefix.
    const bad = rawFile({'a.w': {dtype: 'F32', shape: [1], data_offsets: [0, 4]},
                         'b.w': {dtype: 'F32', shape: [-1], data_offsets: [4, 8]}}, new Array(8).fill(0));
    await expectLoadError(bad, [/tensor 'b\.w'/, /shape\[0\] must be an integer ≥ 0, got number -1/], 'a.');
  });

  for (const dtype of ['F64', 'I64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'C64', 'Q4_K']) {
    it(`rejects dtype ${dtype}, naming the tensor`, async () => {
      const bytes: Record<string, number> = {F64: 8, I64: 8, I32: 4, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
                                             C64: 8, Q4_K: 3};
      const n = 2 * bytes[dtype];
      const file = rawFile({'layer.weight': {dtype, shape: [2], data_offsets: [0, n]}}, new Array(n).fill(0));
      await expectLoadError(file, [/tensor 'layer\.weight'/, new RegExp(`dtype ${dtype}`), /supported: BF16, F16, F32/]);
    });
  }

  it('reads an empty header and zero-size tensors', async () => {
    expect(await loadSafetensors(rawFile({}))).toEqual({});
    const out = await loadSafetensors(rawFile({e: {dtype: 'F32', shape: [0, 3], data_offsets: [0, 0]}}));
    expect(out.e.shape).toEqual([0, 3]);
    out.e.dispose();
  });

  it('parseSafetensorsHeader exposes the validated header', () => {
    const file = encodeSafetensors({a: {dtype: 'F16', shape: [3], data: [1, 2, 3]}}, {format: 'pt'});
    const header = parseSafetensorsHeader(file);
    expect(header.metadata).toEqual({format: 'pt'});
    expect(header.tensors.get('a')).toEqual({dtype: 'F16', shape: [3], dataOffsets: [0, 6]});
    expect(header.dataStart % 8).toBe(0);
    expect(header.dataLength).toBe(6);
  });
});

describe('safetensors: corrupt and hostile files', () => {
  const valid = {w: {dtype: 'F32', shape: [2], data_offsets: [0, 8]}};
  const data8 = new Array(8).fill(0);
  const cases: Array<[string, () => Uint8Array, RegExp[]]> = [
    ['shorter than 8 bytes', () => new Uint8Array([1, 0, 0]),
     [/is 3 bytes, shorter than the 8-byte header length/]],
    ['empty', () => new Uint8Array(0), [/is 0 bytes/]],
    ['header length beyond the file', () => rawFile(valid, data8, 5000),
     [/header length 5000 bytes goes beyond the end of the file \(\d+ bytes\)/]],
    ['header length absurd (> 100 MB)', () => {
      const f = rawFile(valid, data8);
      new DataView(f.buffer).setUint32(0, 200_000_000, true);
      return f;
    }, [/header length 200000000 bytes is absurd \(expected at most 100000000\)/]],
    ['header length ≥ 2^32', () => {
      const f = rawFile(valid, data8);
      new DataView(f.buffer).setUint32(4, 1, true);
      return f;
    }, [/header length \d+ bytes is absurd/]],
    ['header not JSON', () => rawFile('{"w": {dtype: F32}}'), [/the header is not valid JSON/, /starts with/]],
    ['header not UTF-8', () => {
      const f = rawFile('{"w":1}   ');
      f[10] = 0xff;
      return f;
    }, [/the header is not valid UTF-8/]],
    ['header an array', () => rawFile('[1, 2]'), [/the header must be a JSON object, got an array/]],
    ['header a string', () => rawFile('"abc"'), [/the header must be a JSON object, got the string "abc"/]],
    ['header null', () => rawFile('null'), [/the header must be a JSON object, got null/]],
    ['entry not an object', () => rawFile({w: 5}), [/tensor 'w': expected an object \{dtype, shape, data_offsets\}, got number 5/]],
    ['entry without dtype', () => rawFile({w: {shape: [2], data_offsets: [0, 8]}}, data8), [/tensor 'w': missing 'dtype'/]],
    ['entry without shape', () => rawFile({w: {dtype: 'F32', data_offsets: [0, 8]}}, data8), [/tensor 'w': missing 'shape'/]],
    ['entry without data_offsets', () => rawFile({w: {dtype: 'F32', shape: [2]}}, data8), [/tensor 'w': missing 'data_offsets'/]],
    ['dtype not a string', () => rawFile({w: {dtype: 32, shape: [2], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': dtype must be a string, got number 32/]],
    ['shape not an array', () => rawFile({w: {dtype: 'F32', shape: 2, data_offsets: [0, 8]}}, data8),
     [/tensor 'w': shape must be an array of integers ≥ 0, got number 2/]],
    ['negative dim', () => rawFile({w: {dtype: 'F32', shape: [2, -1], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': shape\[1\] must be an integer ≥ 0, got number -1 \(shape \[2,-1\]\)/]],
    ['fractional dim', () => rawFile({w: {dtype: 'F32', shape: [2.5], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': shape\[0\] must be an integer ≥ 0, got number 2\.5/]],
    ['string dim', () => rawFile({w: {dtype: 'F32', shape: ['2'], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': shape\[0\] must be an integer ≥ 0, got the string "2"/]],
    ['data_offsets not a pair', () => rawFile({w: {dtype: 'F32', shape: [2], data_offsets: [0, 4, 8]}}, data8),
     [/tensor 'w': data_offsets must be \[begin, end\], got an array \(\[0,4,8\]\)/]],
    ['data_offsets not integers', () => rawFile({w: {dtype: 'F32', shape: [2], data_offsets: [0, 7.5]}}, data8),
     [/tensor 'w': data_offsets must be two integers ≥ 0, got \[0,7\.5\]/]],
    ['data_offsets negative', () => rawFile({w: {dtype: 'F32', shape: [2], data_offsets: [-8, 0]}}, data8),
     [/tensor 'w': data_offsets must be two integers ≥ 0, got \[-8,0\]/]],
    ['begin > end', () => rawFile({w: {dtype: 'F32', shape: [2], data_offsets: [8, 0]}}, data8),
     [/tensor 'w': data_offsets \[8, 0\] begin after they end/]],
    ['end beyond the data block (truncated file)', () => rawFile(valid, data8.slice(1)),
     [/tensor 'w': data_offsets \[0, 8\] go beyond the data block \(7 bytes\); truncated file\?/]],
    ['byte size ≠ shape × itemsize', () => rawFile({w: {dtype: 'F32', shape: [3], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': data_offsets \[0, 8\] hold 8 bytes, expected 12 \(shape \[3\], 3 elements of F32, 4 bytes each\)/]],
    ['byte size ≠ shape × itemsize (bf16)', () => rawFile({w: {dtype: 'BF16', shape: [2, 3], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': data_offsets \[0, 8\] hold 8 bytes, expected 12/]],
    ['a huge shape with a small range', () => rawFile({w: {dtype: 'F32', shape: [2 ** 40, 2 ** 12], data_offsets: [0, 8]}}, data8),
     [/tensor 'w': data_offsets \[0, 8\] hold 8 bytes, expected \d+/]],
    ['overlapping tensors', () => rawFile({a: {dtype: 'F32', shape: [2], data_offsets: [0, 8]},
                                           b: {dtype: 'F32', shape: [1], data_offsets: [4, 8]}}, data8),
     [/tensors 'a' \[0, 8\] and 'b' \[4, 8\] overlap; expected disjoint byte ranges/]],
    ['__metadata__ not an object', () => rawFile({__metadata__: 'pt', ...valid}, data8),
     [/__metadata__ must be an object of strings, got the string "pt"/]],
    ['__metadata__ value not a string', () => rawFile({__metadata__: {step: 3}, ...valid}, data8),
     [/__metadata__\['step'\] must be a string, got number 3/]],
  ];
  for (const [name, make, patterns] of cases) {
    it(`${name}: an Error`, async () => {
      await expectLoadError(make(), [/^loadSafetensors: safetensors buffer \(\d+ bytes\)/, ...patterns]);
    });
  }

  it('a file cut anywhere is an Error, never a tensor', async () => {
    const file = encodeSafetensors({a: {dtype: 'BF16', shape: [3], data: [1, 2, 3]},
                                    b: {dtype: 'F32', shape: [2], data: [4, 5]}});
    for (const length of [0, 4, 7, 8, 9, 20, file.byteLength - 9, file.byteLength - 8, file.byteLength - 1]) {
      await expectLoadError(file.subarray(0, length), [/^loadSafetensors: /]);
    }
    const whole = await loadSafetensors(file);
    expect(await valuesOf(whole.b)).toEqual([4, 5]);
    disposeAll(whole);
  });

  it('rejects a source that is not bytes or a path', async () => {
    await expectAsync(loadSafetensors(42 as unknown as Uint8Array)).toBeRejectedWithError(
        /expected an ArrayBuffer, a Uint8Array or a file path, got number 42/);
  });
});

describe('safetensors: encodeSafetensors', () => {
  it('rounds F16 and BF16 to nearest, ties to even', () => {
    const f16: Array<[number, number]> = [
      [1.5, 0x3e00], [-2.25, 0xc080], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [1 + 2 ** -11 + 2 ** -30, 0x3c01],
      [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [2 ** -14 - 2 ** -25, 0x0400],
      [-0, 0x8000], [-Infinity, 0xfc00], [NaN, 0x7e00],
    ];
    for (const [x, bits] of f16) expect(float16Bits(x)).withContext(`f16 of ${x}`).toBe(bits);
    const bf16: Array<[number, number]> = [
      [Math.PI, 0x4049], [3.140625, 0x4049], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82],
      [-2.25, 0xc010], [3.4e38, 0x7f80], [2 ** -133, 0x0001], [-0, 0x8000], [Infinity, 0x7f80], [NaN, 0x7fc0],
    ];
    for (const [x, bits] of bf16) expect(bfloat16Bits(x)).withContext(`bf16 of ${x}`).toBe(bits);
  });

  it('round-trips through loadSafetensors with metadata', async () => {
    const file = encodeSafetensors({
      'x.f16': {dtype: 'F16', shape: [2, 2], data: [1.5, -2.25, 65504, 2 ** -24]},
      'x.bf16': {dtype: 'BF16', shape: [3], data: [Math.PI, -0, -Infinity]},
      'x.f32': {dtype: 'F32', shape: [1], data: [0.1]},
    }, {format: 'pt'});
    expect(new DataView(file.buffer).getUint32(0, true) % 8).toBe(0);
    const out = await loadSafetensors(file, {prefix: 'x.'});
    expect(Object.keys(out).sort()).toEqual(['bf16', 'f16', 'f32']);
    expect(await valuesOf(out.f16)).toEqual([1.5, -2.25, 65504, 2 ** -24]);
    const bf = await valuesOf(out.bf16);
    expect(bf[0]).toBe(3.140625);
    expect(Object.is(bf[1], -0)).toBe(true);
    expect(bf[2]).toBe(-Infinity);
    expect(await valuesOf(out.f32)).toEqual([Math.fround(0.1)]);
    disposeAll(out);
  });

  it('rejects bad input', () => {
    expect(() => encodeSafetensors({w: {dtype: 'F64' as 'F32', shape: [1], data: [1]}}))
        .toThrowError(/tensor 'w' dtype: expected 'F32', 'F16' or 'BF16', got the string "F64"/);
    expect(() => encodeSafetensors({w: {dtype: 'F32', shape: [2, 2], data: [1, 2, 3]}}))
        .toThrowError(/tensor 'w': shape \[2,2\] holds 4 values, got 3/);
    expect(() => encodeSafetensors({w: {dtype: 'F32', shape: [-1], data: []}}))
        .toThrowError(/tensor 'w' shape: expected integers ≥ 0/);
    expect(() => encodeSafetensors({__metadata__: {dtype: 'F32', shape: [0], data: []}}))
        .toThrowError(/'__metadata__' is not a tensor name/);
  });
});

// In Node a string source is a file path: only the header and the selected tensors are read.
describe('safetensors: a file path in Node', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tfjs-mla-safetensors-'));
  });
  afterAll(() => {
    rmSync(dir, {recursive: true, force: true});
  });

  it('reads the tensors of a prefix from a file, as from its bytes', async () => {
    const bytes = encodeSafetensors({
      'model.layers.0.self_attn.q_proj.weight': {dtype: 'BF16', shape: [2, 2], data: [1.5, -2.25, 3.140625, 0]},
      'model.layers.0.self_attn.kv_a_layernorm.weight': {dtype: 'F32', shape: [3], data: [0.5, 1, 2]},
      'model.layers.1.self_attn.q_proj.weight': {dtype: 'F16', shape: [1], data: [7]},
    }, {format: 'pt'});
    const file = path.join(dir, 'model.safetensors');
    writeFileSync(file, bytes);
    const fromFile = await loadSafetensors(file, {prefix: 'model.layers.0.self_attn.'});
    expect(Object.keys(fromFile).sort()).toEqual(['kv_a_layernorm.weight', 'q_proj.weight']);
    expect(fromFile['q_proj.weight'].shape).toEqual([2, 2]);
    expect(await valuesOf(fromFile['q_proj.weight'])).toEqual([1.5, -2.25, 3.140625, 0]);
    expect(await valuesOf(fromFile['kv_a_layernorm.weight'])).toEqual([0.5, 1, 2]);
    const fromBytes = await loadSafetensors(bytes, {prefix: 'model.layers.0.self_attn.'});
    for (const name of Object.keys(fromBytes)) {
      expect(await valuesOf(fromFile[name])).withContext(name).toEqual(await valuesOf(fromBytes[name]));
    }
    disposeAll(fromFile);
    disposeAll(fromBytes);
  });

  it('a missing file, a directory and a truncated file are Errors naming the path', async () => {
    const missing = path.join(dir, 'missing.safetensors');
    await expectAsync(loadSafetensors(missing)).toBeRejectedWithError(
        new RegExp(`^loadSafetensors: cannot open safetensors file '${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'`));
    const folder = path.join(dir, 'folder.safetensors');
    mkdirSync(folder);
    await expectAsync(loadSafetensors(folder)).toBeRejectedWithError(/safetensors file '.*folder\.safetensors' is not a regular file/);
    const cut = path.join(dir, 'cut.safetensors');
    const whole = encodeSafetensors({w: {dtype: 'F32', shape: [4], data: [1, 2, 3, 4]}});
    writeFileSync(cut, whole.subarray(0, whole.byteLength - 3));
    const before = tf.memory().numTensors;
    await expectAsync(loadSafetensors(cut)).toBeRejectedWithError(
        /safetensors file '.*cut\.safetensors'.*tensor 'w': data_offsets \[0, 16\] go beyond the data block \(13 bytes\); truncated file\?/s);
    expect(tf.memory().numTensors).withContext('numTensors after the error').toBe(before);
  });
});
