import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {halfWGSL, halfWGSLKey} from '../src/kernels/webgpu/half_wgsl.js';
import {flatLayout, mainHeader} from '../src/kernels/webgpu/webgpu_util.js';
import {HALF_DTYPES, HalfDtype, halfBits, halfValue} from '../src/precision/half.js';
import {mlaPackHalf, mlaUnpackHalf} from '../src/ops/mla_ops.js';
import {expectNoNewTensors, useWebGPUFor} from './helpers/backends.js';
import {randomUint32} from './helpers/random.js';

/**
 * The WGSL of half_wgsl.ts against the cpu reference src/precision/half.ts, bit for bit: the
 * MLAPackHalf / MLAUnpackHalf programs (packHalf2 / unpackHalf2) and a program that widens each
 * value with halfAt, over every 16-bit pattern, random float32 bit patterns (all exponents,
 * subnormals, NaN, ±Inf, ±0) and the rounding ties. (half.ts itself is checked against an
 * oracle in the Node lane: test/node/half.spec.ts.)
 */

/**
 * Value j of words w (int32 [n]) into float32 [2n] with halfAt per value. (packHalf2 and
 * unpackHalf2 run through the package's own MLAPackHalf / MLAUnpackHalf programs.)
 */
class HalfAtProgram implements WebGPUProgram {
  variableNames = ['w'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(private readonly dtype: HalfDtype, numWords: number) {
    this.outputShape = [2 * numWords];
    this.dispatchLayout = flatLayout(1);
    this.dispatch = [Math.ceil(2 * numWords / this.workgroupSize[0]), 1, 1];
    this.shaderKey = `halfAtTest_${halfWGSLKey(dtype)}`;
  }

  getUserCode(): string {
    return `
    ${halfWGSL(this.dtype)}

    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      result[index] = halfAt(w[index / 2], (index & 1) == 1);
    }`;
  }
}

/** The packed words of float32 bit patterns (an even count) on webgpu. */
async function packOnWebGPU(dtype: HalfDtype, floatBits: Uint32Array): Promise<Uint32Array> {
  const x = tf.tensor1d(new Float32Array(floatBits.buffer.slice(0)), 'float32');
  const out = mlaPackHalf(x, dtype);
  const words = await out.data() as Int32Array;
  tf.dispose([x, out]);
  return new Uint32Array(words.buffer, words.byteOffset, words.length).slice();
}

/** The float32 bits of the values packed in `words` on webgpu. */
async function unpackOnWebGPU(dtype: HalfDtype, words: Uint32Array, viaHalfAt: boolean): Promise<Uint32Array> {
  const w = tf.tensor1d(new Int32Array(words.buffer.slice(0)), 'int32');
  const backend = tf.backend() as WebGPUBackend;
  const out = viaHalfAt ?
      tf.engine().makeTensorFromTensorInfo(backend.runWebGPUProgram(new HalfAtProgram(dtype, words.length), [w], 'float32', [])) :
      mlaUnpackHalf(w, dtype);
  const values = await out.data() as Float32Array;
  tf.dispose([w, out]);
  return new Uint32Array(values.buffer, values.byteOffset, values.length).slice();
}

const CANONICAL_NAN: Record<HalfDtype, number> = {bfloat16: 0x7fc0, float16: 0x7e00};

function isNaN32(bits: number): boolean {
  return (bits & 0x7fffffff) > 0x7f800000;
}

function isNaN16(dtype: HalfDtype, h: number): boolean {
  return dtype === 'bfloat16' ? (h & 0x7fff) > 0x7f80 : (h & 0x7fff) > 0x7c00;
}

const scratch = new DataView(new ArrayBuffer(4));

function bitsOf(x: number): number {
  scratch.setFloat32(0, x);
  return scratch.getUint32(0);
}

function valueOf(bits: number): number {
  scratch.setUint32(0, bits);
  return scratch.getFloat32(0);
}

/**
 * half.ts's bits of the float32 with bits `bits`. A NaN goes through JS as a number, which
 * need not keep a NaN's sign: its result is the quiet NaN with the sign of the float32 bits,
 * as half.ts's NaN rule says.
 */
function referenceBits(dtype: HalfDtype, bits: number): number {
  if (isNaN32(bits)) return ((bits >>> 16) & 0x8000) | CANONICAL_NAN[dtype];
  return halfBits(valueOf(bits), dtype);
}

/**
 * The exact float32 widening of half bits `h`: half.ts's value, and for a NaN its sign and
 * payload moved into place (half.ts widens NaN to a plain NaN).
 */
function widenedBits(dtype: HalfDtype, h: number): number {
  if (!isNaN16(dtype, h)) return bitsOf(halfValue(h, dtype));
  const sign = (h & 0x8000) << 16;
  return (dtype === 'bfloat16' ? h << 16 : sign | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
}

function hex(bits: number, digits: number): string {
  return `0x${(bits >>> 0).toString(16).padStart(digits, '0')}`;
}

/** Float32 bit patterns: random ones of every exponent, ones in the format's range, specials. */
function randomFloatBits(dtype: HalfDtype, count: number, seed: number): Uint32Array {
  const next = randomUint32(seed);
  const specials = [
    0x00000000, 0x80000000, 0x7f800000, 0xff800000,  // ±0, ±Inf
    0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x7fa00000,  // NaN
    0x00000001, 0x80000001, 0x007fffff, 0x807fffff, 0x00400000, 0x00008000, 0x00018000,  // subnormal
    0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff, 0x47800000, 0x477ff000, 0x477fefff,  // huge
    0x33000000, 0x33000001, 0xb3000000, 0x387fc000, 0x387fe000, 0x38800000,  // f16 small
  ];
  const bits = new Uint32Array(count);
  bits.set(specials);
  for (let i = specials.length; i < count; i++) {
    const r = next();
    switch (i % 4) {
      case 0: bits[i] = r; break;  // any pattern
      case 1: bits[i] = r & 0x807fffff; break;  // float32 subnormals
      case 2: bits[i] = (r & 0x807fffff) | ((dtype === 'float16' ? 100 + next() % 46 : next() % 256) << 23); break;
      default: bits[i] = (r & 0x807fffff) | ((dtype === 'float16' ? 140 + next() % 5 : 250 + next() % 6) << 23); break;
    }
  }
  return bits;
}

/** Float32 ties between neighbouring half values (and the patterns just beside them). */
function tieBits(dtype: HalfDtype): Uint32Array {
  const out: number[] = [];
  for (let h = 0; h < 0x7fff; h += 37) {
    const lo = halfValue(h, dtype);
    const hi = halfValue(h + 1, dtype);
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) continue;
    const tie = (lo + hi) / 2;
    if (Math.fround(tie) !== tie) continue;
    const bits = bitsOf(tie);
    out.push(bits, bits + 1, bits - 1, (bits | 0x80000000) >>> 0);
  }
  // The named cases of test/node/half.spec.ts.
  const named = dtype === 'bfloat16' ?
      [1 + 2 ** -8, 1 + 2 ** -8 + 2 ** -16, 1 + 3 * 2 ** -8, (2 - 2 ** -8) * 2 ** 127] :
      [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, 65520 - 2 ** -8, 2 ** -25, 2 ** -25 * (1 + 2 ** -23),
       1.5 * 2 ** -24, 2.5 * 2 ** -24, 1023.5 * 2 ** -24];
  for (const x of named) out.push(bitsOf(x), bitsOf(-x));
  if (out.length % 2 === 1) out.push(0);
  return Uint32Array.from(out);
}

describe('half_wgsl packHalf2/unpackHalf2/halfAt match half.ts [webgpu]', () => {
  useWebGPUFor('MLADecode');

  for (const dtype of HALF_DTYPES) {
    /** Packs `floatBits` on webgpu and compares each half with half.ts; returns the count. */
    async function expectPackedLikeReference(floatBits: Uint32Array, what: string): Promise<number> {
      const words = await packOnWebGPU(dtype, floatBits);
      expect(words.length).toBe(floatBits.length / 2);
      let mismatches = 0;
      for (let i = 0; i < floatBits.length; i++) {
        const actual = (i & 1) === 0 ? words[i >> 1] & 0xffff : words[i >> 1] >>> 16;
        const expected = referenceBits(dtype, floatBits[i]);
        if (actual !== expected && mismatches++ < 10) {
          fail(`${dtype} ${what}: float32 ${hex(floatBits[i], 8)} (${valueOf(floatBits[i])}) packed to ` +
               `${hex(actual, 4)}, half.ts ${hex(expected, 4)}`);
        }
      }
      expect(mismatches).withContext(`${dtype} ${what}: mismatches`).toBe(0);
      return floatBits.length;
    }

    it(`${dtype}: packHalf2 of every widened 16-bit pattern gives the pattern back (NaN: the quiet NaN)`, async () => {
      await expectNoNewTensors(async () => {
        const floatBits = new Uint32Array(0x10000);
        for (let h = 0; h < 0x10000; h++) floatBits[h] = widenedBits(dtype, h);
        expect(await expectPackedLikeReference(floatBits, 'all patterns')).toBe(65536);
        // And the bits themselves: h, NaNs canonical with their sign.
        const words = await packOnWebGPU(dtype, floatBits);
        let wrong = 0;
        for (let h = 0; h < 0x10000; h++) {
          const actual = (h & 1) === 0 ? words[h >> 1] & 0xffff : words[h >> 1] >>> 16;
          const expected = isNaN16(dtype, h) ? (h & 0x8000) | CANONICAL_NAN[dtype] : h;
          if (actual !== expected) wrong++;
        }
        expect(wrong).withContext('patterns not packed back to themselves').toBe(0);
      }, `${dtype} pack`);
    });

    it(`${dtype}: packHalf2 rounds random float32 patterns (subnormal, huge, NaN, ±Inf, ±0) and ties as half.ts`, async () => {
      await expectNoNewTensors(async () => {
        const random = randomFloatBits(dtype, 4096, dtype === 'bfloat16' ? 21 : 22);
        expect(await expectPackedLikeReference(random, 'random')).toBe(4096);
        const ties = tieBits(dtype);
        expect(ties.length).toBeGreaterThan(1000);
        await expectPackedLikeReference(ties, 'ties');
      }, `${dtype} pack random`);
    });

    for (const viaHalfAt of [false, true]) {
      const fn = viaHalfAt ? 'halfAt' : 'unpackHalf2';
      it(`${dtype}: ${fn} widens every 16-bit pattern exactly (subnormals kept)`, async () => {
        await expectNoNewTensors(async () => {
          const words = new Uint32Array(0x8000);
          for (let i = 0; i < words.length; i++) words[i] = ((2 * i + 1) << 16 | 2 * i) >>> 0;
          // The same patterns the other way round in the words: low and high halves both see all.
          const swapped = words.map((w) => ((w << 16) | (w >>> 16)) >>> 0);
          for (const [input, order] of [[words, 'in order'], [swapped, 'swapped']] as const) {
            const bits = await unpackOnWebGPU(dtype, input, viaHalfAt);
            expect(bits.length).toBe(0x10000);
            let wrong = 0;
            for (let i = 0; i < bits.length; i++) {
              const h = (i & 1) === 0 ? input[i >> 1] & 0xffff : input[i >> 1] >>> 16;
              // NaN: any NaN (WGSL need not keep a NaN's payload through an f32 store).
              const ok = isNaN16(dtype, h) ? isNaN32(bits[i]) : bits[i] === widenedBits(dtype, h);
              if (!ok && wrong++ < 10) {
                fail(`${dtype} ${fn} (${order}): ${hex(h, 4)} widened to ${hex(bits[i], 8)}, half.ts ` +
                     `${hex(widenedBits(dtype, h), 8)} (${halfValue(h, dtype)})`);
              }
            }
            expect(wrong).withContext(`${fn} ${order}: mismatches`).toBe(0);
          }
        }, `${dtype} ${fn}`);
      });
    }
  }
});
