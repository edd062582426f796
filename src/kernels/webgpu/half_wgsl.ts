/**
 * WGSL of the packed 16-bit storage of ../../precision/half.ts: two bfloat16 or float16 values
 * per i32 word (value 2i in the low 16 bits of word i), rounded to nearest-even on write and
 * widened exactly on read, bit for bit as half.ts does, so webgpu equals cpu.
 *
 * tfjs's webgpu backend does not request `shader-f16`, so there is no f16 type: everything is
 * integer bit operations on bitcast<u32> values. Not pack2x16float / unpack2x16float: WGSL
 * leaves the rounding of the former unspecified and lets the latter flush subnormals.
 * Bit operations also stay right under WGSL's finite-math license (an implementation may assume
 * no NaN or Inf in float arithmetic; a bitcast still sees their bits).
 *
 * The source defines exactly three functions, so a shader can include it next to its own
 * helpers without name clashes: packHalf2 rounds both values as a vec2 instead of calling a
 * helper, and unpackHalf2 calls halfAt.
 */
import type {HalfDtype} from '../../precision/half.js';

/** A short name of `dtype` for shader keys. */
export function halfWGSLKey(dtype: HalfDtype): string {
  return dtype === 'bfloat16' ? 'bf16' : 'f16';
}

/**
 * WGSL defining, for `dtype`:
 * - `fn packHalf2(a : f32, b : f32) -> i32`: a rounded in the low 16 bits, b in the high 16;
 * - `fn unpackHalf2(w : i32) -> vec2<f32>`: both halves of w widened (low half in x);
 * - `fn halfAt(w : i32, high : bool) -> f32`: one half of w widened.
 */
export function halfWGSL(dtype: HalfDtype): string {
  return dtype === 'bfloat16' ? BF16_WGSL : F16_WGSL;
}

const BF16_WGSL = `
    // bfloat16 is the high half of a float32: round off the low 16 bits.
    fn packHalf2(a : f32, b : f32) -> i32 {
      let bits = bitcast<vec2<u32>>(vec2<f32>(a, b));
      // + 0x7FFF rounds up past the halfway point; + the kept lsb also rounds an exact tie up
      // when that makes it even. A carry into the exponent is right, up to Inf.
      let rounded = (bits + vec2(0x7fffu) + ((bits >> vec2(16u)) & vec2(1u))) >> vec2(16u);
      // NaN would carry into the sign or become Inf: the quiet NaN with its sign instead.
      let quietNaN = ((bits >> vec2(16u)) & vec2(0x8000u)) | vec2(0x7fc0u);
      let h = select(rounded, quietNaN, (bits & vec2(0x7fffffffu)) > vec2(0x7f800000u));
      return bitcast<i32>(h.x | (h.y << 16u));
    }

    fn halfAt(w : i32, high : bool) -> f32 {
      let bits = bitcast<u32>(w);
      return bitcast<f32>(select(bits << 16u, bits & 0xffff0000u, high));
    }

    fn unpackHalf2(w : i32) -> vec2<f32> {
      return vec2<f32>(halfAt(w, false), halfAt(w, true));
    }`;

const F16_WGSL = `
    // float16: 5 exponent bits (bias 15), 10 mantissa bits, subnormals in units of 2^-24.
    fn packHalf2(a : f32, b : f32) -> i32 {
      let bits = bitcast<vec2<u32>>(vec2<f32>(a, b));
      let signBit = (bits >> vec2(16u)) & vec2(0x8000u);
      let magnitude = bits & vec2(0x7fffffffu);
      let exponent = magnitude >> vec2(23u);  // biased: 2^e has exponent 127 + e
      let significand = (magnitude & vec2(0x7fffffu)) | vec2(0x800000u);  // 24 bits
      // Significand bits that do not fit: 13 for f16 normals (≥ 2^-14: exponent ≥ 113), one
      // more per binade below, as subnormals have a fixed unit of 2^-24 (24 at 2^-25).
      let isSubnormal = exponent < vec2(113u);
      let shift = select(vec2(13u), min(vec2(126u) - exponent, vec2(24u)), isSubnormal);
      let kept = significand >> shift;
      let dropped = significand & ((vec2(1u) << shift) - vec2(1u));
      let halfway = vec2(1u) << (shift - vec2(1u));
      let roundUp = (dropped > halfway) | ((dropped == halfway) & ((kept & vec2(1u)) == vec2(1u)));
      // kept holds the implicit bit for normals: replaced by the exponent. The +1 of rounding
      // may carry into the exponent: the largest subnormal to the smallest normal, 65504 to Inf.
      let normal = ((exponent - vec2(112u)) << vec2(10u)) | (kept & vec2(0x3ffu));
      var h = select(normal, kept, isSubnormal) + select(vec2(0u), vec2(1u), roundUp);
      h = select(h, vec2(0u), magnitude < vec2(0x33000000u));  // below 2^-25 (float32 subnormals too): ±0
      h = select(h, vec2(0x7c00u), magnitude >= vec2(0x47800000u));  // 2^16 and up, Inf: ±Inf
      h = select(h, vec2(0x7e00u), magnitude > vec2(0x7f800000u));  // NaN: the quiet NaN
      h |= signBit;
      return bitcast<i32>(h.x | (h.y << 16u));
    }

    fn halfAt(w : i32, high : bool) -> f32 {
      let bits = bitcast<u32>(w);
      let h = select(bits & 0xffffu, bits >> 16u, high);
      let signBit = (h & 0x8000u) << 16u;
      let exponent = (h >> 10u) & 0x1fu;
      let mantissa = h & 0x3ffu;
      // A subnormal m · 2^-24 is a float32 normal: the exact product (m has ≤ 10 bits), its
      // sign set after. (Not firstLeadingBit: a slow loop on SwiftShader, 6× the decode step.)
      let subnormal = bitcast<u32>(f32(mantissa) * 5.9604644775390625e-8);
      let normal = ((exponent + 112u) << 23u) | (mantissa << 13u);
      let infOrNaN = 0x7f800000u | (mantissa << 13u);
      let magnitude = select(select(normal, infOrNaN, exponent == 0x1fu), subnormal, exponent == 0u);
      return bitcast<f32>(signBit | magnitude);
    }

    fn unpackHalf2(w : i32) -> vec2<f32> {
      return vec2<f32>(halfAt(w, false), halfAt(w, true));
    }`;
