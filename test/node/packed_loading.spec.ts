import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {bfloat16Bits, encodeSafetensors, float16Bits, loadSafetensors, PackedHalfTensor} from '../../src/index.js';

// The host side of packed loading: loadSafetensors(…, {keepHalf: true}) hands BF16/F16 data
// over as the file's bits (two little-endian uint16 per int32 word), and encodeSafetensors'
// rounding (half.ts's conversions behind a round-to-odd step) matches an exact-double oracle.
// Layers loading PackedHalfTensors on cpu and webgpu: test/packed_loading.spec.ts.

/** A safetensors file of raw 16-bit patterns / float32 values, entries in the given order. */
function rawFile(entries: Array<[string, 'BF16'|'F16'|'F32', number[], number[]]>): Uint8Array {
  const header: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, dtype, shape, data] of entries) {
    const bytes = new Uint8Array(data.length * (dtype === 'F32' ? 4 : 2));
    const view = new DataView(bytes.buffer);
    data.forEach((v, i) => (dtype === 'F32' ? view.setFloat32(4 * i, v, true) : view.setUint16(2 * i, v, true)));
    header[name] = {dtype, shape, data_offsets: [offset, offset + bytes.byteLength]};
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setUint32(0, json.byteLength, true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The expected words: value 2i in the low 16 bits of word i. */
function wordsOf(bits: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < bits.length; i += 2) out.push(((bits[i + 1] << 16) | bits[i]) | 0);
  return out;
}

const PATTERNS = [0x3fc0, 0xc010, 0x0000, 0x8000, 0x7f80, 0xff80, 0x0001, 0x7fc1, 0xffff, 0x7c00, 0x3c00, 0x1234];

describe('packed loading: loadSafetensors keepHalf', () => {
  it('BF16 and F16 come back as PackedHalfTensors of the file bits (NaN payloads and -0 included)', async () => {
    const file = rawFile([['l.a', 'BF16', [3, 4], PATTERNS], ['l.b', 'F16', [2, 6], PATTERNS],
                          ['other', 'BF16', [2], [1, 2]]]);
    const before = tf.memory().numTensors;
    const out = await loadSafetensors(file, {prefix: 'l.', keepHalf: true});
    expect(Object.keys(out)).toEqual(['a', 'b']);
    for (const [key, dtype, shape] of [['a', 'bfloat16', [3, 4]], ['b', 'float16', [2, 6]]] as const) {
      const packed = out[key] as PackedHalfTensor;
      expect(packed).toBeInstanceOf(PackedHalfTensor);
      expect(packed.dtype).toBe(dtype);
      expect(packed.shape).toEqual([...shape]);
      expect(packed.size).toBe(12);
      expect(packed.words.dtype).toBe('int32');
      expect(packed.words.shape).toEqual([shape[0], shape[1] / 2]);
      expect(Array.from(await packed.words.data())).toEqual(wordsOf(PATTERNS));
    }
    expect(tf.memory().numTensors - before).toBe(2);
    Object.values(out).forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(before);
  });

  it('odd last dims, scalars and F32 load as float32 tensors; empty ones pack', async () => {
    const file = rawFile([['odd', 'BF16', [2, 3], [0x3fc0, 0xc010, 0, 0x8000, 0x3f80, 0x4000]],
                          ['scalar', 'F16', [], [0x3e00]], ['f32', 'F32', [2], [0.5, -3]],
                          ['empty', 'BF16', [0, 4], []]]);
    const out = await loadSafetensors(file, {keepHalf: true});
    expect(out.odd).toBeInstanceOf(tf.Tensor);
    expect(Array.from(await (out.odd as tf.Tensor).data())).toEqual([1.5, -2.25, 0, -0, 1, 2]);
    expect((out.scalar as tf.Tensor).shape).toEqual([]);
    expect(Array.from(await (out.scalar as tf.Tensor).data())).toEqual([1.5]);
    expect((out.f32 as tf.Tensor).dtype).toBe('float32');
    expect(Array.from(await (out.f32 as tf.Tensor).data())).toEqual([0.5, -3]);
    expect(out.empty).toBeInstanceOf(PackedHalfTensor);
    expect((out.empty as PackedHalfTensor).words.shape).toEqual([0, 2]);
    Object.values(out).forEach((t) => t.dispose());
    expect(out.empty.isDisposed).toBe(true);
  });

  it('without keepHalf everything is float32, widened exactly (half.ts)', async () => {
    const out = await loadSafetensors(rawFile([['a', 'BF16', [4], [0x3fc0, 0xc010, 0x0001, 0x7f80]],
                                               ['b', 'F16', [4], [0x3e00, 0x0001, 0x8000, 0xfc00]]]));
    expect(Array.from(await out.a.data())).toEqual([1.5, -2.25, 2 ** -133, Infinity]);
    const b = Array.from(await out.b.data());
    expect(b).toEqual([1.5, 2 ** -24, -0, -Infinity]);
    expect(Object.is(b[2], -0)).toBe(true);
    tf.dispose(Object.values(out));
  });

  it('reads a file path in Node with keepHalf, and rejects a keepHalf that is not a boolean', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tfjs-mla-packed-'));
    try {
      const file = path.join(dir, 'w.safetensors');
      writeFileSync(file, encodeSafetensors({w: {dtype: 'BF16', shape: [1, 4], data: [1, -2, 0.5, 3]}}));
      const out = await loadSafetensors(file, {keepHalf: true});
      const packed = out.w as PackedHalfTensor;
      expect(Array.from(await packed.words.data())).toEqual(wordsOf([0x3f80, 0xc000, 0x3f00, 0x4040]));
      packed.dispose();
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
    await expectAsync(loadSafetensors(rawFile([]), {keepHalf: 'yes' as unknown as boolean})).toBeRejectedWithError(
        /loadSafetensors keepHalf: expected a boolean, got the string "yes"/);
  });

  it('PackedHalfTensor.fromLittleEndianBits checks its input', () => {
    expect(() => PackedHalfTensor.fromLittleEndianBits(new Uint8Array(6), 'float16', [3]))
        .toThrowError(/expected an even last dim, got shape \[3\]/);
    expect(() => PackedHalfTensor.fromLittleEndianBits(new Uint8Array(6), 'float16', [4]))
        .toThrowError(/shape \[4\] needs 8 bytes, got 6/);
    // Unaligned bytes are fine.
    const bytes = new Uint8Array(9).subarray(1);
    bytes.set([0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f, 0x40, 0x40]);
    const p = PackedHalfTensor.fromLittleEndianBits(bytes, 'bfloat16', [2, 2]);
    expect(Array.from(p.words.dataSync())).toEqual(wordsOf([0x3f80, 0xc000, 0x3f00, 0x4040]));
    p.dispose();
  });
});

/**
 * The bits of the IEEE binary format nearest to x (ties to even) from x's exact double value:
 * the oracle encodeSafetensors used before it went through half.ts.
 */
function exactBits(x: number, exponentBits: number, mantissaBits: number): number {
  const bias = 2 ** (exponentBits - 1) - 1;
  const expMask = 2 ** exponentBits - 1;
  const signBit = 2 ** (exponentBits + mantissaBits);
  if (Number.isNaN(x)) return expMask * 2 ** mantissaBits + 2 ** (mantissaBits - 1);
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  if (a >= (2 - 2 ** -(mantissaBits + 1)) * 2 ** bias) return sign + expMask * 2 ** mantissaBits;
  const minExponent = 1 - bias;
  const roundHalfEven = (q: number) => {
    const f = Math.floor(q);
    const d = q - f;
    return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
  };
  if (a < 2 ** minExponent) return sign + roundHalfEven(a * 2 ** (mantissaBits - minExponent));
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven((a / 2 ** e - 1) * 2 ** mantissaBits);
  if (m === 2 ** mantissaBits) {
    m = 0;
    e++;
  }
  return sign + (e + bias) * 2 ** mantissaBits + m;
}

describe('packed loading: encodeSafetensors rounding through half.ts', () => {
  it('doubles round as from their exact value (no double rounding), against an exact oracle', () => {
    let state = 12345;
    const random = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32;
    };
    const values: number[] = [];
    for (let i = 0; i < 20000; i++) {
      const magnitude = 2 ** Math.floor(random() * 300 - 150);
      values.push((random() < 0.5 ? -1 : 1) * magnitude * (1 + random()));
    }
    // Just off the ties of each format: the cases double rounding through float32 gets wrong.
    for (let k = 0; k < 2000; k++) {
      const e = Math.floor(random() * 40) - 20;
      const m = Math.floor(random() * 1024);
      for (const [bits, unit] of [[10, 2 ** -11], [7, 2 ** -8]] as const) {
        void bits;
        const tie = (1 + (2 * m + 1) * unit) * 2 ** e;
        values.push(tie, tie + 2 ** (e - 40), tie - 2 ** (e - 40), -tie - 2 ** (e - 45));
      }
    }
    values.push(0, -0, Infinity, -Infinity, NaN, 65504, 65519.99, 65520, 2 ** -24, 2 ** -25, 2 ** -25 + 2 ** -60,
                3.4028234663852886e38, 3.4e38, 1e39, 2 ** -149, 2 ** -150, 2 ** -150 + 2 ** -170, 1 + 2 ** -11 + 2 ** -30);
    let mismatches = 0;
    for (const x of values) {
      const f16 = float16Bits(x);
      const bf16 = bfloat16Bits(x);
      if (f16 !== exactBits(x, 5, 10) || bf16 !== exactBits(x, 8, 7)) {
        if (mismatches++ < 5) {
          fail(`x = ${x}: f16 ${f16.toString(16)} (exact ${exactBits(x, 5, 10).toString(16)}), ` +
               `bf16 ${bf16.toString(16)} (exact ${exactBits(x, 8, 7).toString(16)})`);
        }
      }
    }
    expect(mismatches).withContext(`of ${values.length} values`).toBe(0);
  });
});
