/**
 * The FP8 latent cache row (FlashMLA's layout): c_kv as float8 e4m3fn codes with one float32
 * scale per block of 128 values (scale = max|block| / 448, so the largest value maps to ±448),
 * k_pe as bfloat16. Stored in int32 words: [L / 4 words of codes (value 4i + j in byte j of
 * word i)] [ceil(L / 128) float32 scales] [R / 2 words of bf16 pairs]: 656 bytes for L = 512,
 * R = 64. This is the cpu reference; ../kernels/webgpu/fp8_wgsl.ts does the same in WGSL.
 */
import {floatToBf16Bits, bf16BitsToFloat} from './half.js';

/** Values per scale block of c_kv. */
export const FP8_BLOCK = 128;
/** The largest finite e4m3fn value. */
export const E4M3_MAX = 448;

export interface Fp8RowLayout {
  latentDim: number;
  ropeDim: number;
  /** Words of e4m3 codes: L / 4. */
  codeWords: number;
  /** Words of float32 scales: ceil(L / 128). */
  scaleWords: number;
  /** Words of bf16 k_pe pairs: R / 2. */
  ropeWords: number;
  rowWords: number;
}

export function fp8RowLayout(latentDim: number, ropeDim: number): Fp8RowLayout {
  const codeWords = latentDim / 4;
  const scaleWords = Math.ceil(latentDim / FP8_BLOCK);
  const ropeWords = ropeDim / 2;
  return {latentDim, ropeDim, codeWords, scaleWords, ropeWords, rowWords: codeWords + scaleWords + ropeWords};
}

const scratch = new DataView(new ArrayBuffer(4));

/** Round half to even of a non-negative number. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The e4m3fn code of x (first rounded to float32): nearest-even, saturating at ±448 (±Inf too);
 * NaN becomes 0x7F with x's sign.
 */
export function floatToE4m3(x: number): number {
  scratch.setFloat32(0, x);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 31) << 7;
  const magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) return sign | 0x7f;
  scratch.setUint32(0, magnitude);
  const a = scratch.getFloat32(0);
  if (a > E4M3_MAX) return sign | 0x7e;
  const exponent = magnitude >>> 23;
  if (exponent >= 121) {
    // Normal (≥ 2^-6): keep 3 mantissa bits, nearest-even; a carry moves into the exponent.
    const rounded = magnitude + 0x7ffff + ((magnitude >>> 20) & 1);
    return sign | ((((rounded >>> 23) - 120) << 3) | ((rounded >>> 20) & 7));
  }
  // Subnormal: units of 2^-9 (8 of them is the smallest normal, 0x08).
  return sign | roundHalfEven(a * 512);
}

export function e4m3ToFloat(code: number): number {
  const sign = (code & 0x80) !== 0 ? -1 : 1;
  const exponent = (code >>> 3) & 0xf;
  const mantissa = code & 7;
  if (exponent === 15 && mantissa === 7) return NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -9;
  return sign * (8 + mantissa) * 2 ** (exponent - 10);
}

/** The block's scale: max|x| / 448 in float32 (0 for an all-zero block; NaN propagates). */
function blockScale(row: ArrayLike<number>, start: number, end: number): number {
  let max = 0;
  for (let i = start; i < end; i++) max = Math.max(max, Math.abs(row[i]));
  return Math.fround(Math.fround(max) / E4M3_MAX);
}

/** Encodes a float32 row [L + R] into `out` at word `outOffset` (layout above). */
export function encodeFp8Row(row: ArrayLike<number>, layout: Fp8RowLayout, out: Int32Array<ArrayBufferLike>,
                             outOffset: number): void {
  const {latentDim, codeWords, scaleWords, ropeWords} = layout;
  const scales: number[] = [];
  for (let b = 0; b < scaleWords; b++) {
    scales.push(blockScale(row, b * FP8_BLOCK, Math.min(latentDim, (b + 1) * FP8_BLOCK)));
  }
  for (let w = 0; w < codeWords; w++) {
    const scale = scales[Math.floor(4 * w / FP8_BLOCK)];
    let word = 0;
    for (let j = 0; j < 4; j++) {
      // A zero scale (all-zero block) gives zero codes, never 0/0.
      const scaled = scale > 0 ? Math.fround(row[4 * w + j] / scale) : (Number.isNaN(scale) ? NaN : 0);
      word |= floatToE4m3(scaled) << (8 * j);
    }
    out[outOffset + w] = word;
  }
  for (let b = 0; b < scaleWords; b++) {
    scratch.setFloat32(0, scales[b]);
    out[outOffset + codeWords + b] = scratch.getInt32(0);
  }
  for (let w = 0; w < ropeWords; w++) {
    const low = floatToBf16Bits(row[latentDim + 2 * w]);
    const high = floatToBf16Bits(row[latentDim + 2 * w + 1]);
    out[outOffset + codeWords + scaleWords + w] = (high << 16) | low;
  }
}

/** Decodes the row at word `offset` into float32 [L + R]. */
export function decodeFp8Row(words: ArrayLike<number>, offset: number, layout: Fp8RowLayout,
                             out = new Float32Array(layout.latentDim + layout.ropeDim)): Float32Array {
  const {latentDim, codeWords, scaleWords, ropeWords} = layout;
  for (let c = 0; c < latentDim; c++) {
    const code = (words[offset + (c >> 2)] >>> (8 * (c & 3))) & 0xff;
    scratch.setInt32(0, words[offset + codeWords + Math.floor(c / FP8_BLOCK)]);
    out[c] = e4m3ToFloat(code) * scratch.getFloat32(0);
  }
  for (let w = 0; w < ropeWords; w++) {
    const word = words[offset + codeWords + scaleWords + w];
    out[latentDim + 2 * w] = bf16BitsToFloat(word & 0xffff);
    out[latentDim + 2 * w + 1] = bf16BitsToFloat((word >>> 16) & 0xffff);
  }
  return out;
}
