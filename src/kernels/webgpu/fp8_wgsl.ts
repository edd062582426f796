/**
 * WGSL of the FP8 cache row of ../../precision/fp8.ts (FlashMLA's layout: e4m3fn codes of c_kv,
 * a float32 scale per 128 values, then k_pe as bf16 pairs), with integer bit operations only
 * (no f16 or f8 types), producing the cpu reference's codes.
 */
import {FP8_BLOCK, Fp8RowLayout} from '../../precision/fp8.js';
import {halfWGSL} from './half_wgsl.js';

/** A short name for shader keys: the layout's sizes. */
export function fp8WGSLKey(layout: Fp8RowLayout): string {
  return `fp8L${layout.latentDim}R${layout.ropeDim}`;
}

/**
 * WGSL defining, for a cache bound as `cache : array<i32>` with rows of `layout`:
 * - `e4m3ToF32(code : u32) -> f32` and `f32ToE4m3(x : f32) -> u32` (nearest-even, saturating at
 *   ±448, NaN → 0x7F with the sign);
 * - `fp8CacheValue(slot : i32, c : i32) -> f32`: value c of cache row `slot`;
 * - `fp8CacheVec4(slot : i32, c : i32) -> vec4<f32>`: values c .. c + 3 (c a multiple of 4);
 * - bf16's packHalf2 / unpackHalf2 / halfAt (half_wgsl.ts), for k_pe.
 * With `readsCache` false the cache readers are left out (a program that only writes rows).
 */
export function fp8WGSL(layout: Fp8RowLayout, readsCache = true): string {
  const {latentDim: L, codeWords, scaleWords, rowWords} = layout;
  const readers = !readsCache ? '' : `
    fn fp8Scale(slot : i32, c : i32) -> f32 {
      return bitcast<f32>(cache[slot * ${rowWords} + ${codeWords} + c / ${FP8_BLOCK}]);
    }

    fn fp8CacheValue(slot : i32, c : i32) -> f32 {
      if (c < ${L}) {
        let code = (bitcast<u32>(cache[slot * ${rowWords} + c / 4]) >> (8u * u32(c & 3))) & 0xffu;
        return e4m3ToF32(code) * fp8Scale(slot, c);
      }
      let j = c - ${L};
      return halfAt(cache[slot * ${rowWords} + ${codeWords + scaleWords} + j / 2], (j & 1) == 1);
    }

    fn fp8CacheVec4(slot : i32, c : i32) -> vec4<f32> {
      if (c < ${L}) {
        let word = bitcast<u32>(cache[slot * ${rowWords} + c / 4]);
        let codes = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
        let scale = fp8Scale(slot, c);
        return vec4<f32>(e4m3ToF32(codes.x), e4m3ToF32(codes.y), e4m3ToF32(codes.z),
                         e4m3ToF32(codes.w)) * scale;
      }
      let w = slot * ${rowWords} + ${codeWords + scaleWords} + (c - ${L}) / 2;
      return vec4<f32>(unpackHalf2(cache[w]), unpackHalf2(cache[w + 1]));
    }`;
  return `${halfWGSL('bfloat16')}
    // e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; no Inf; 0x7F is NaN.
    fn e4m3ToF32(code : u32) -> f32 {
      let exponent = (code >> 3u) & 0xfu;
      let mantissa = code & 7u;
      let magnitude = select(ldexp(f32(8u + mantissa), i32(exponent) - 10),
                             f32(mantissa) * 0.001953125, exponent == 0u);
      let signed = select(magnitude, -magnitude, (code & 0x80u) != 0u);
      // NaN from bits (with the code's sign): float arithmetic may assume no NaN, and a
      // constant NaN is not valid WGSL.
      return select(signed, bitcast<f32>(((code & 0x80u) << 24u) | 0x7fc00000u), (code & 0x7fu) == 0x7fu);
    }

    fn f32ToE4m3(x : f32) -> u32 {
      let bits = bitcast<u32>(x);
      let sign = (bits >> 31u) << 7u;
      let magnitude = bits & 0x7fffffffu;
      // Normal (≥ 2^-6): keep 3 mantissa bits, nearest-even; a carry moves into the exponent.
      let rounded = magnitude + 0x7ffffu + ((magnitude >> 20u) & 1u);
      let normal = (((rounded >> 23u) - 120u) << 3u) | ((rounded >> 20u) & 7u);
      // Subnormal: units of 2^-9, nearest-even (WGSL's round).
      let subnormal = u32(round(bitcast<f32>(magnitude) * 512.0));
      var code = select(subnormal, normal, (magnitude >> 23u) >= 121u);
      code = select(code, 0x7eu, magnitude > 0x43e00000u);  // past 448 (Inf too): saturate
      code = select(code, 0x7fu, magnitude > 0x7f800000u);  // NaN
      return sign | code;
    }
${readers}`;
}
