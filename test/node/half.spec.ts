import {bf16BitsToFloat, f16BitsToFloat, floatToBf16Bits, floatToF16Bits, HALF_DTYPES, HalfDtype, halfBits,
        halfValue, packedLength, packedValue, packHalf, roundToHalf, setPackedValue,
        unpackHalf} from '../../src/precision/half.js';
import {randomUint32} from '../helpers/random.js';

// src/precision/half.ts (the cpu reference of the 16-bit storage) against an oracle written
// from the formats' definitions: widening by the formula sign · significand · 2^exponent, and
// rounding by a search for the nearest of the representable values around x (ties to the even
// bit pattern, IEEE's round-to-nearest-even). The webgpu side (half_wgsl.ts) is compared with
// half.ts bit for bit in the browser lane (test/half_wgsl.spec.ts).

interface Format {
  dtype: HalfDtype;
  mantissaBits: number;
  exponentBits: number;
  /** The quiet NaN half.ts writes (without the sign). */
  canonicalNaN: number;
}

const FORMATS: Record<HalfDtype, Format> = {
  bfloat16: {dtype: 'bfloat16', mantissaBits: 7, exponentBits: 8, canonicalNaN: 0x7fc0},
  float16: {dtype: 'float16', mantissaBits: 10, exponentBits: 5, canonicalNaN: 0x7e00},
};

/** The value of bit pattern `h` from the definition of the format. */
function oracleValue(f: Format, h: number): number {
  const sign = (h & 0x8000) !== 0 ? -1 : 1;
  const maxExponent = (1 << f.exponentBits) - 1;
  const bias = (1 << (f.exponentBits - 1)) - 1;
  const exponent = (h >>> f.mantissaBits) & maxExponent;
  const mantissa = h & ((1 << f.mantissaBits) - 1);
  if (exponent === maxExponent) return mantissa === 0 ? sign * Infinity : NaN;
  const significand = exponent === 0 ? mantissa / 2 ** f.mantissaBits : 1 + mantissa / 2 ** f.mantissaBits;
  return sign * significand * 2 ** (Math.max(exponent, 1) - bias);
}

/** Every finite non-negative value of the format, ascending, with its bits (h = index). */
function positiveTable(f: Format): Float64Array {
  const infinity = ((1 << f.exponentBits) - 1) << f.mantissaBits;
  const values = new Float64Array(infinity);
  for (let h = 0; h < infinity; h++) values[h] = oracleValue(f, h);
  return values;
}

const TABLES: Record<HalfDtype, Float64Array> = {
  bfloat16: positiveTable(FORMATS.bfloat16),
  float16: positiveTable(FORMATS.float16),
};

/**
 * The bits nearest to x (a float32 value): a binary search for the two representable values
 * around |x|, then the nearer of them, the even pattern on a tie. Past the largest finite value
 * the next neighbour is Inf, standing for 2^(emax + 1) (IEEE: overflow from maxFinite + ulp/2).
 */
function oracleBits(f: Format, x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (Number.isNaN(x)) return f.canonicalNaN;
  const table = TABLES[f.dtype];
  const infinity = table.length;
  const ulpAtMax = table[infinity - 1] - table[infinity - 2];
  const valueOf = (h: number) => h === infinity ? table[infinity - 1] + ulpAtMax : table[h];
  if (a >= valueOf(infinity)) return sign | infinity;
  let lo = 0;
  let hi = infinity;  // valueOf(lo) ≤ a < valueOf(hi)
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (valueOf(mid) <= a) lo = mid;
    else hi = mid;
  }
  const below = a - valueOf(lo);
  const above = valueOf(hi) - a;
  const nearest = below < above ? lo : above < below ? hi : (lo & 1) === 0 ? lo : hi;
  return sign | nearest;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function fromBits32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

function bits32(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** Hex of 16 bits, for messages. */
function hex(h: number): string {
  return `0x${(h >>> 0).toString(16).padStart(4, '0')}`;
}

/** Tie and boundary cases: [x, bits] with x an exact float32. */
const EDGE_CASES: Record<HalfDtype, Array<[number, number, string]>> = {
  bfloat16: [
    [1 + 2 ** -8, 0x3f80, '1 + 2^-8: tie, down to even 1'],
    [1 + 2 ** -8 + 2 ** -16, 0x3f81, '1 + 2^-8 + 2^-16: above the tie'],
    [1 + 2 ** -8 - 2 ** -23, 0x3f80, 'just below the tie'],
    [1 + 3 * 2 ** -8, 0x3f82, '1 + 3·2^-8: tie, up to even'],
    [-(1 + 3 * 2 ** -8), 0xbf82, 'negative tie, up to even'],
    [(2 - 2 ** -8) * 2 ** 127, 0x7f80, 'max + ulp/2: tie, to Inf'],
    [(2 - 2 ** -8 - 2 ** -23) * 2 ** 127, 0x7f7f, 'just below max + ulp/2: max'],
    [fromBits32(0x7f7fffff), 0x7f80, 'float32 max: Inf'],
    [fromBits32(0xff7fffff), 0xff80, '-float32 max: -Inf'],
    [fromBits32(0x00008000), 0x0000, 'subnormal tie to 0'],
    [fromBits32(0x00018000), 0x0002, 'subnormal tie up to even'],
    [fromBits32(0x00000001), 0x0000, 'smallest float32 subnormal'],
    [fromBits32(0x807fffff), 0x8080, 'largest float32 subnormal, negative: carries to the smallest normal'],
    [0, 0x0000, '+0'],
    [-0, 0x8000, '-0'],
    [Infinity, 0x7f80, 'Inf'],
    [-Infinity, 0xff80, '-Inf'],
  ],
  float16: [
    [1 + 2 ** -11, 0x3c00, '1 + 2^-11: tie, down to even 1'],
    [1 + 2 ** -11 + 2 ** -23, 0x3c01, 'just above the tie'],
    [1 + 3 * 2 ** -11, 0x3c02, '1 + 3·2^-11: tie, up to even'],
    [-(1 + 3 * 2 ** -11), 0xbc02, 'negative tie, up to even'],
    [65504, 0x7bff, 'max'],
    [65520, 0x7c00, 'max + ulp/2: tie, to Inf'],
    [65520 - 2 ** -8, 0x7bff, 'just below max + ulp/2: max'],
    [-65520, 0xfc00, '-(max + ulp/2): -Inf'],
    [65536, 0x7c00, '2^16: Inf'],
    [2 ** 100, 0x7c00, 'huge: Inf'],
    [2 ** -24, 0x0001, 'smallest subnormal'],
    [2 ** -25, 0x0000, '2^-25: tie, to 0'],
    [-(2 ** -25), 0x8000, '-2^-25: tie, to -0'],
    [2 ** -25 * (1 + 2 ** -23), 0x0001, 'just above 2^-25: smallest subnormal'],
    [2 ** -25 * (2 - 2 ** -23), 0x0001, 'just below 2^-24: smallest subnormal'],
    [2 ** -26, 0x0000, '2^-26: 0'],
    [1.5 * 2 ** -24, 0x0002, 'subnormal tie, up to even'],
    [2.5 * 2 ** -24, 0x0002, 'subnormal tie, down to even'],
    [1023.5 * 2 ** -24, 0x0400, 'largest subnormal + ulp/2: tie, to the smallest normal'],
    [1023 * 2 ** -24, 0x03ff, 'largest subnormal'],
    [2 ** -14, 0x0400, 'smallest normal'],
    [(2 ** 11 - 0.5) * 2 ** -14 / 2 ** 10, 0x0800, 'a tie that carries into the exponent'],
    [fromBits32(0x00000001), 0x0000, 'smallest float32 subnormal'],
    [fromBits32(0x807fffff), 0x8000, 'largest float32 subnormal, negative'],
    [0, 0x0000, '+0'],
    [-0, 0x8000, '-0'],
    [Infinity, 0x7c00, 'Inf'],
    [-Infinity, 0xfc00, '-Inf'],
  ],
};

describe('half.ts: bfloat16/float16 conversions against an oracle', () => {
  it('the oracle itself: known values', () => {
    expect(oracleValue(FORMATS.bfloat16, 0x3f80)).toBe(1);
    expect(oracleValue(FORMATS.bfloat16, 0x7f7f)).toBe(fromBits32(0x7f7f0000));
    expect(oracleValue(FORMATS.bfloat16, 0x0001)).toBe(2 ** -133);
    expect(oracleValue(FORMATS.float16, 0x3c00)).toBe(1);
    expect(oracleValue(FORMATS.float16, 0x7bff)).toBe(65504);
    expect(oracleValue(FORMATS.float16, 0x0001)).toBe(2 ** -24);
    expect(oracleValue(FORMATS.float16, 0x0400)).toBe(2 ** -14);
    expect(oracleValue(FORMATS.float16, 0xc000)).toBe(-2);
    expect(oracleBits(FORMATS.float16, 65520)).toBe(0x7c00);
    expect(oracleBits(FORMATS.bfloat16, 1 + 2 ** -8)).toBe(0x3f80);
  });

  for (const dtype of HALF_DTYPES) {
    const f = FORMATS[dtype];
    describe(dtype, () => {
      it('widens each of the 65,536 bit patterns exactly and re-packs it to itself (NaNs to the quiet NaN)', () => {
        let checked = 0;
        let nans = 0;
        for (let h = 0; h < 0x10000; h++) {
          const value = halfValue(h, dtype);
          const expected = oracleValue(f, h);
          if (Number.isNaN(expected)) {
            nans++;
            if (!Number.isNaN(value)) fail(`${hex(h)} widened to ${value}, expected NaN`);
            // The NaN's sign reaches float32 only as far as the JS engine keeps NaN bits.
            const sign = (bits32(value) >>> 16) & 0x8000;
            const packed = halfBits(value, dtype);
            if (packed !== (sign | f.canonicalNaN)) fail(`${hex(h)} (NaN) re-packed to ${hex(packed)}`);
          } else {
            if (!Object.is(value, expected)) fail(`${hex(h)} widened to ${value}, expected ${expected}`);
            if (Math.fround(value) !== value) fail(`${hex(h)} widened to ${value}, not a float32`);
            const packed = halfBits(value, dtype);
            if (packed !== h) fail(`${hex(h)} (${value}) re-packed to ${hex(packed)}`);
          }
          checked++;
        }
        expect(checked).toBe(65536);
        expect(nans).toBe(2 * (2 ** f.mantissaBits - 1));
        // The named entry points agree with halfValue/halfBits.
        const [toBits, toFloat] = dtype === 'bfloat16' ? [floatToBf16Bits, bf16BitsToFloat] :
                                                         [floatToF16Bits, f16BitsToFloat];
        expect(toFloat(0x3c00 | 0x8000)).toBe(halfValue(0xbc00, dtype));
        expect(toBits(-3.25)).toBe(halfBits(-3.25, dtype));
      });

      it('rounds ties to even, and at the ends of the range (overflow, subnormals, zero)', () => {
        for (const [x, bits, what] of EDGE_CASES[dtype]) {
          expect(Math.fround(x)).withContext(`${what}: not a float32`).toBe(x);
          expect(hex(oracleBits(f, x))).withContext(`${what}: oracle`).toBe(hex(bits));
          expect(hex(halfBits(x, dtype))).withContext(`${what} (${x})`).toBe(hex(bits));
        }
      });

      it('rounds NaN to the quiet NaN with its sign', () => {
        for (const bits of [0x7fc00000, 0x7f800001, 0x7fffffff, 0x7fa00000, 0xffc00000, 0xff800001]) {
          const x = fromBits32(bits);
          // Whether the JS number keeps the float32 NaN's sign is up to the engine: expect the
          // sign of the float32 NaN half.ts sees.
          const sign = (bits32(x) >>> 16) & 0x8000;
          expect(hex(halfBits(x, dtype))).withContext(`NaN 0x${bits.toString(16)}`)
              .toBe(hex(sign | f.canonicalNaN));
        }
        expect(halfBits(NaN, dtype) & 0x7fff).toBe(f.canonicalNaN);
      });

      it('rounds random float32 values to the nearest representable value (brute-force neighbour search)', () => {
        const next = randomUint32(dtype === 'bfloat16' ? 11 : 12);
        let checked = 0;
        const check = (bits: number, why: string) => {
          const x = fromBits32(bits);
          if (Number.isNaN(x)) return;
          const expected = oracleBits(f, x);
          const actual = halfBits(x, dtype);
          if (actual !== expected) {
            fail(`${why} 0x${(bits >>> 0).toString(16)} (${x}): ${hex(actual)}, expected ${hex(expected)}`);
          }
          checked++;
        };
        // Any bit pattern: every exponent of float32.
        for (let i = 0; i < 20000; i++) check(next(), 'random');
        // Exponents around the format's range (f16: 2^-27 … 2^17; bf16: subnormals to 2^-120 and
        // the top binades), where the rounding has cases.
        const exponents = dtype === 'float16' ? [100, 146] : [0, 8];
        for (let i = 0; i < 20000; i++) {
          const e = exponents[0] + next() % (exponents[1] - exponents[0]);
          check((next() & 0x807fffff) | (e << 23), 'in range');
          if (dtype === 'bfloat16') check((next() & 0x807fffff) | ((246 + next() % 9) << 23), 'top');
        }
        // Near ties: a representable value plus half an ulp, ± the last float32 bit.
        for (let i = 0; i < 5000; i++) {
          const h = next() & 0x7fff;
          const lo = oracleValue(f, h);
          const hi = oracleValue(f, h + 1);
          if (!Number.isFinite(lo) || !Number.isFinite(hi)) continue;
          const tie = (lo + hi) / 2;
          if (Math.fround(tie) !== tie) continue;  // only float32 ties: a tie is decided here
          const tieBits = bits32(tie);
          check(tieBits, 'tie');
          check(tieBits + 1, 'above a tie');
          if (tie > 0) check(tieBits - 1, 'below a tie');
          check(tieBits | 0x80000000, 'negative tie');
        }
        expect(checked).toBeGreaterThan(50000);
      });

      it('packs two per int32 word (value 2i low), and packHalf/unpackHalf/packedValue/setPackedValue round trip', () => {
        for (const length of [0, 1, 2, 7, 64]) {
          const next = randomUint32(100 + length);
          // Values that need rounding, exact ones, signed zeros, Inf and NaN.
          const values = Array.from({length}, (_, i) =>
              i % 9 === 8 ? NaN : i % 7 === 6 ? -Infinity : i % 5 === 4 ? -0 : fromBits32(next() & 0xc7ffffff));
          const words = packHalf(values, dtype);
          expect(words.length).toBe(packedLength(length));
          expect(words.length).toBe(Math.ceil(length / 2));
          for (let i = 0; i < words.length; i++) {
            const low = halfBits(values[2 * i], dtype);
            const high = 2 * i + 1 < length ? halfBits(values[2 * i + 1], dtype) : 0;
            expect(hex(words[i] >>> 0)).withContext(`length ${length}: word ${i}`)
                .toBe(hex(((high << 16) | low) >>> 0));
          }
          const rounded = values.map((x) => roundToHalf(x, dtype));
          const unpacked = unpackHalf(words, dtype, length);
          expect(unpacked.length).toBe(length);
          for (let i = 0; i < length; i++) {
            expect(Object.is(unpacked[i], rounded[i]) || (Number.isNaN(unpacked[i]) && Number.isNaN(rounded[i])))
                .withContext(`length ${length}: value ${i} (${unpacked[i]} vs ${rounded[i]})`).toBe(true);
            const read = packedValue(words, i, dtype);
            expect(Object.is(read, unpacked[i]) || (Number.isNaN(read) && Number.isNaN(unpacked[i])))
                .withContext(`packedValue ${i}`).toBe(true);
          }
          // Re-packing the widened values changes nothing.
          expect(Array.from(packHalf(unpacked, dtype))).toEqual(Array.from(words));
          if (length >= 2) {
            // An offset window of unpackHalf, and packHalf into a bigger array at an offset.
            expect(Array.from(unpackHalf(words, dtype, length - 1, 1))).toEqual(Array.from(unpacked.subarray(1)));
            const into = new Int32Array(words.length + 3).fill(-1);
            packHalf(values, dtype, into, 2);
            expect(Array.from(into.subarray(2, 2 + words.length))).toEqual(Array.from(words));
            expect([into[0], into[1], into[into.length - 1]]).toEqual([-1, -1, -1]);
          }
          // setPackedValue, value by value into words of all ones: each write keeps the other half.
          const written = new Int32Array(words.length).fill(-1);
          for (let i = 0; i < length; i++) {
            setPackedValue(written, i, values[i], dtype);
            const word = written[i >> 1] >>> 0;
            const other = (i & 1) === 0 ? word >>> 16 : word & 0xffff;
            const expectedOther = (i & 1) === 0 ? 0xffff : halfBits(values[i - 1], dtype);
            expect(hex(other)).withContext(`setPackedValue ${i}: the other half`).toBe(hex(expectedOther));
          }
          if (length % 2 === 1) {
            // The odd tail's high half: 0 from packHalf, untouched (all ones) by setPackedValue.
            expect((words[words.length - 1] >>> 16)).toBe(0);
            expect((written[written.length - 1] >>> 16)).toBe(0xffff);
            written[written.length - 1] &= 0xffff;
          }
          expect(Array.from(written)).toEqual(Array.from(words));
        }
      });
    });
  }
});
