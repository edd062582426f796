import {Fp8RowLayout, fp8RowLayout} from '../precision/fp8.js';
/**
 * How FusedRope and MLALinear read their inputs and shape their outputs, computed once from
 * the shapes and attrs: the op wrappers validate with these, and the cpu and webgpu kernels
 * index with them, so every backend reads the same elements.
 */

/** Where MLALinear reads and writes (elements), as documented in kernel_names.ts. */
export interface LinearLayout {
  outputShape: number[];
  /** G: batch entries (1 without a batch dim). */
  numEntries: number;
  m: number;
  k: number;
  /** N = N1 + N2: output columns. */
  n: number;
  /** N1: columns from w (the rest from w2). */
  splitCol: number;
  xEntryStride: number;
  xRowStride: number;
  outEntryStride: number;
  outRowStride: number;
}

export function linearLayout(xShape: readonly number[], wShape: readonly number[],
                             w2Shape: readonly number[]|null, tokenMajor: boolean,
                             weightDtype: string = 'float32'): LinearLayout {
  // A 16-bit weight holds two values a word along K.
  const k = wShape[wShape.length - 1] * (weightDtype === 'float32' ? 1 : 2);
  const n1 = wShape[wShape.length - 2];
  const n = n1 + (w2Shape === null ? 0 : w2Shape[0]);
  if (xShape.length === 2) {
    const [m, xWidth] = xShape;
    return {outputShape: [m, n], numEntries: 1, m, k, n, splitCol: n1, xEntryStride: 0,
            xRowStride: xWidth, outEntryStride: 0, outRowStride: n};
  }
  if (tokenMajor) {
    const [m, g] = xShape;
    return {outputShape: [m, g, n], numEntries: g, m, k, n, splitCol: n1, xEntryStride: k,
            xRowStride: g * k, outEntryStride: n, outRowStride: g * n};
  }
  const [g, m] = xShape;
  return {outputShape: [g, m, n], numEntries: g, m, k, n, splitCol: n1, xEntryStride: m * k,
          xRowStride: k, outEntryStride: m * n, outRowStride: n};
}

/** What FusedRope reads and writes, as documented in kernel_names.ts. */
export interface FusedRopeLayout {
  numTokens: number;
  numHeads: number;
  /** N: the nope columns of a q head. */
  nopeDim: number;
  /** R. */
  ropeDim: number;
  /** L. */
  latentDim: number;
  /** Head h of token t starts at element t·qRowStride + h·(N + R) of q. */
  qRowStride: number;
  /** With W_UKᵀ: the absorbed query [T, H, L + R]; else q roped, [T, H, N + R]. */
  absorbed: boolean;
  outputShape: number[];
}

export function fusedRopeLayout(
    qShape: readonly number[], gammaShape: readonly number[], freqsCisShape: readonly number[],
    wUkTShape: readonly number[]|null, attrs: {numHeads?: number, qkNopeHeadDim?: number}):
    FusedRopeLayout {
  const numTokens = qShape[0];
  const ropeDim = freqsCisShape[1];
  const latentDim = gammaShape[0];
  let numHeads: number;
  let nopeDim: number;
  let qRowStride: number;
  if (qShape.length === 3) {
    numHeads = qShape[1];
    nopeDim = qShape[2] - ropeDim;
    qRowStride = qShape[1] * qShape[2];
  } else {
    numHeads = attrs.numHeads ?? 0;
    nopeDim = attrs.qkNopeHeadDim ?? 0;
    qRowStride = qShape[1];
  }
  const absorbed = wUkTShape !== null;
  const outputShape = [numTokens, numHeads, (absorbed ? latentDim : nopeDim) + ropeDim];
  return {numTokens, numHeads, nopeDim, ropeDim, latentDim, qRowStride, absorbed, outputShape};
}

/**
 * D, the values of a cache row, from the cache tensor's shape and its storage dtype (for
 * float8_e4m3fn, from L and R: the shape alone does not say).
 */
export function cacheRowWidth(cacheShape: readonly number[], cacheDtype: string|undefined,
                              fp8?: {kvLoraRank?: number, ropeDim?: number}): number {
  const stored = cacheShape[cacheShape.length - 1];
  if (cacheDtype === 'float8_e4m3fn') return (fp8?.kvLoraRank ?? 0) + (fp8?.ropeDim ?? 0);
  return cacheDtype === 'bfloat16' || cacheDtype === 'float16' ? 2 * stored : stored;
}

/** The FP8 row layout of a float8_e4m3fn cache (null for other dtypes). */
export function cacheFp8Layout(cacheDtype: string|undefined, kvLoraRank: number, ropeDim: number):
    Fp8RowLayout|null {
  return cacheDtype === 'float8_e4m3fn' ? fp8RowLayout(kvLoraRank, ropeDim) : null;
}
