import {decodeFp8Row, E4M3_MAX, e4m3ToFloat, encodeFp8Row, floatToE4m3, fp8RowLayout} from '../../src/precision/fp8.js';

// src/precision/fp8.ts, the cpu reference of the FP8 cache row (FlashMLA's layout), against
// the e4m3fn format's definition: the 254 finite codes (plus ±NaN), nearest-even rounding by a
// search over them, saturation at ±448, and the row codec's scale rule (a zero block, NaN).
// The webgpu side runs the same rows through the kernels (test/cache_dtypes.spec.ts).

/** Every finite e4m3fn value with its code, ascending. */
function finiteValues(): Array<{value: number, code: number}> {
  const out: Array<{value: number, code: number}> = [];
  for (let code = 0; code < 256; code++) {
    if ((code & 0x7f) === 0x7f) continue;  // NaN
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 3) & 15;
    const mantissa = code & 7;
    const value = sign * (exponent === 0 ? mantissa / 8 * 2 ** -6 : (1 + mantissa / 8) * 2 ** (exponent - 7));
    out.push({value, code});
  }
  return out.sort((a, b) => a.value - b.value);
}

/** The oracle: nearest finite value, ties to the even code, saturating at ±448. */
function oracleCode(x: number, values: Array<{value: number, code: number}>): number {
  if (Number.isNaN(x)) return x < 0 || Object.is(x, -0) ? 0xff : 0x7f;
  const clamped = Math.max(-E4M3_MAX, Math.min(E4M3_MAX, x));
  let best = values[0];
  for (const v of values) {
    const d = Math.abs(v.value - clamped);
    const bestD = Math.abs(best.value - clamped);
    if (d < bestD || (d === bestD && (v.code & 1) === 0 && (best.code & 1) === 1)) best = v;
  }
  // ±0: keep the sign of x.
  if (best.value === 0) return x < 0 || Object.is(x, -0) ? 0x80 : 0;
  return best.code;
}

describe('fp8.ts: e4m3fn codes and the FP8 cache row', () => {
  const values = finiteValues();

  it('widens every code as the format defines it and encodes each finite value to its own code', () => {
    expect(values.length).toBe(254);
    for (const {value, code} of values) {
      expect(e4m3ToFloat(code)).withContext(`code ${code}`).toBe(value);
      if (value !== 0) expect(floatToE4m3(value)).withContext(`value ${value}`).toBe(code);
    }
    expect(e4m3ToFloat(0x7f)).toBeNaN();
    expect(e4m3ToFloat(0xff)).toBeNaN();
    expect(e4m3ToFloat(0x7e)).toBe(448);
  });

  it('rounds to nearest, ties to even, and saturates at ±448 (Inf too), never to NaN', () => {
    let state = 12345;
    const random = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 4294967296;
    };
    const samples = [0.5 * (values[100].value + values[101].value), 0.5 * (values[200].value + values[201].value),
                     2 ** -10, 3 * 2 ** -10, 448, 449, 463, 464, 1e6, -1e6, Infinity, -Infinity];
    for (let i = 0; i < 20000; i++) samples.push((random() * 2 - 1) * 2 ** (random() * 24 - 12));
    for (const x of samples) {
      const fx = Math.fround(x);
      expect(floatToE4m3(fx)).withContext(`x = ${fx}`).toBe(oracleCode(fx, values));
    }
    expect(floatToE4m3(Infinity)).toBe(0x7e);
    expect(floatToE4m3(-Infinity)).toBe(0xfe);
    expect(floatToE4m3(NaN) & 0x7f).toBe(0x7f);
  });

  it('a row: 656 bytes at 512 + 64; values within half a step of their block; k_pe as bf16', () => {
    const layout = fp8RowLayout(512, 64);
    expect(layout.rowWords * 4).toBe(656);
    const small = fp8RowLayout(136, 8);  // two blocks, the second partial (8 values)
    let state = 7;
    const random = () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 4294967296 * 2 - 1;
    };
    const row = Float32Array.from({length: 144}, (_, i) => random() * (i < 128 ? 3 : 0.01));
    const words = new Int32Array(small.rowWords + 2);
    encodeFp8Row(row, small, words, 2);
    const back = decodeFp8Row(words, 2, small);
    for (const [start, end] of [[0, 128], [128, 136]]) {
      const max = Math.max(...Array.from(row.subarray(start, end), Math.abs));
      for (let i = start; i < end; i++) {
        // e4m3 steps are at most 2^-3 of the value's binade, 32/448 of the block max above 2^-6.
        expect(Math.abs(back[i] - row[i])).withContext(`value ${i}`).toBeLessThanOrEqual(max / 448 * 16 + 1e-12);
      }
    }
    for (let i = 136; i < 144; i++) expect(Math.abs(back[i] - row[i])).toBeLessThanOrEqual(Math.abs(row[i]) * 2 ** -8);
  });

  it('an all-zero block stores scale 0 and zeros (never 0 / 0); a NaN stays in its block', () => {
    const layout = fp8RowLayout(256, 4);
    const row = new Float32Array(260);
    for (let i = 128; i < 256; i++) row[i] = i / 100;
    row[200] = NaN;
    const words = new Int32Array(layout.rowWords);
    encodeFp8Row(row, layout, words, 0);
    const back = decodeFp8Row(words, 0, layout);
    expect(Array.from(back.subarray(0, 128)).every((v) => v === 0)).withContext('the zero block').toBe(true);
    expect(Array.from(back.subarray(128, 256)).some(Number.isNaN)).withContext('the NaN block').toBe(true);
    expect(Array.from(back.subarray(256)).every((v) => v === 0)).withContext('k_pe').toBe(true);
  });
});
