/**
 * 16-bit storage (bfloat16, float16) for tfjs, which has no 16-bit dtype: values are rounded
 * from float32 to nearest-even and packed two per 32-bit word of an int32 tensor (value 2i in
 * the low 16 bits, value 2i + 1 in the high 16 bits). Arithmetic stays float32: kernels widen
 * on read. These are the cpu reference's conversions; the WGSL in
 * ../kernels/webgpu/half_wgsl.ts produces the same bits.
 */

export type HalfDtype = 'bfloat16'|'float16';

export const HALF_DTYPES: readonly HalfDtype[] = ['bfloat16', 'float16'];

export function isHalfDtype(dtype: unknown): dtype is HalfDtype {
  return dtype === 'bfloat16' || dtype === 'float16';
}

const scratch = new DataView(new ArrayBuffer(4));

function float32Bits(x: number): number {
  scratch.setFloat32(0, x);
  return scratch.getUint32(0);
}

function bitsToFloat32(bits: number): number {
  scratch.setUint32(0, bits >>> 0);
  return scratch.getFloat32(0);
}

/**
 * The bfloat16 bits of x (first rounded to float32): round to nearest, ties to even; NaN
 * becomes the quiet NaN 0x7FC0 with x's sign; values past the largest bf16 round to ±Inf.
 */
export function floatToBf16Bits(x: number): number {
  const bits = float32Bits(x);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
    return ((bits >>> 16) & 0x8000) | 0x7fc0;
  }
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bf16BitsToFloat(h: number): number {
  return bitsToFloat32((h & 0xffff) << 16);
}

/**
 * The float16 bits of x (first rounded to float32): round to nearest, ties to even, with
 * subnormals; values past 65504 (after rounding) become ±Inf; NaN becomes 0x7E00 with x's sign.
 */
export function floatToF16Bits(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x007fffff;
  if (exponent === 0xff) return sign | (mantissa !== 0 ? 0x7e00 : 0x7c00);
  // The value as an integer count of units of 2^-24 (float16's smallest subnormal), with the
  // bits shifted out deciding the rounding.
  const unbiased = exponent - 127;
  if (unbiased > 15) return sign | 0x7c00;
  if (unbiased < -25) return sign;  // below half the smallest subnormal: ±0
  const significand = exponent === 0 ? mantissa : mantissa | 0x00800000;  // 24 bits, value · 2^23
  // value = significand · 2^(unbiased − 23); in units of 2^-24 for subnormals, of 2^(e−10) else.
  const shift = unbiased < -14 ? -unbiased - 1 : 13;  // bits to drop from the 24-bit significand
  let halfBits: number;
  const kept = significand >>> shift;
  const dropped = significand & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  const roundUp = dropped > halfway || (dropped === halfway && (kept & 1) === 1);
  if (unbiased < -14) {
    halfBits = kept + (roundUp ? 1 : 0);  // subnormal (a carry into 0x400 is the smallest normal)
  } else {
    halfBits = ((unbiased + 15) << 10) + (kept & 0x3ff) + (roundUp ? 1 : 0);  // a carry may reach Inf
  }
  return sign | halfBits;
}

export function f16BitsToFloat(h: number): number {
  const sign = (h & 0x8000) !== 0 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

export function halfBits(x: number, dtype: HalfDtype): number {
  return dtype === 'bfloat16' ? floatToBf16Bits(x) : floatToF16Bits(x);
}

export function halfValue(bits: number, dtype: HalfDtype): number {
  return dtype === 'bfloat16' ? bf16BitsToFloat(bits) : f16BitsToFloat(bits);
}

/** x after a round trip through `dtype`. */
export function roundToHalf(x: number, dtype: HalfDtype): number {
  return halfValue(halfBits(x, dtype), dtype);
}

/** Words for `count` values: ceil(count / 2). */
export function packedLength(count: number): number {
  return Math.ceil(count / 2);
}

/** Packs values (rounded to nearest-even) two per int32 word; an odd tail's high half is 0. */
export function packHalf(values: ArrayLike<number>, dtype: HalfDtype,
                         out: Int32Array<ArrayBufferLike> = new Int32Array(packedLength(values.length)),
                         outOffset = 0): Int32Array<ArrayBufferLike> {
  for (let i = 0; i < values.length; i += 2) {
    const low = halfBits(values[i], dtype);
    const high = i + 1 < values.length ? halfBits(values[i + 1], dtype) : 0;
    out[outOffset + i / 2] = (high << 16) | low;
  }
  return out;
}

/** The value at `index` of packed words (value 2i in the low half of word i). */
export function packedValue(words: ArrayLike<number>, index: number, dtype: HalfDtype): number {
  const word = words[index >> 1];
  return halfValue((index & 1) === 0 ? word & 0xffff : (word >>> 16) & 0xffff, dtype);
}

/** Writes `value` (rounded) at `index` of packed words, keeping the other half of its word. */
export function setPackedValue(words: Int32Array<ArrayBufferLike>, index: number, value: number, dtype: HalfDtype): void {
  const word = words[index >> 1];
  const bits = halfBits(value, dtype);
  words[index >> 1] = (index & 1) === 0 ? (word & ~0xffff) | bits : (word & 0xffff) | (bits << 16);
}

/** Widens `count` packed values starting at value `start`. */
export function unpackHalf(words: ArrayLike<number>, dtype: HalfDtype, count: number, start = 0,
                           out: Float32Array<ArrayBufferLike> = new Float32Array(count)):
    Float32Array<ArrayBufferLike> {
  for (let i = 0; i < count; i++) out[i] = packedValue(words, start + i, dtype);
  return out;
}
