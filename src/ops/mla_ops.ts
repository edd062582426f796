import * as tf from '@tensorflow/tfjs-core';
import {FUSED_ROPE, FusedRopeAttrs, LINEAR, MLA_DECODE, MLA_PREFILL, MLADecodeAttrs, MLALinearAttrs, MLAPrefillAttrs} from '../kernels/kernel_names.js';
import {cacheRowWidth, fusedRopeLayout} from '../kernels/layouts.js';
import {CacheDtype, MLA_GATHER_ROWS, MLA_PACK_HALF, MLA_RMS_NORM, MLA_SWIGLU, MLA_UNPACK_HALF, MLAGatherRowsAttrs,
        WeightDtype} from '../kernels/kernel_names.js';
import {HalfDtype, isHalfDtype} from '../precision/half.js';
import {fp8RowLayout} from '../precision/fp8.js';
import {checkInteger, checkShape} from './check.js';
import {assertSupportedBackend} from './backend_check.js';

/**
 * The op wrappers of the kernels: each checks shapes and dtypes against the contract in
 * src/kernels/kernel_names.ts, then runs the kernel registered for the active backend.
 */

/**
 * A cache input: float32 [pages, pageSize, D], or with a 16-bit cacheDtype int32
 * [pages, pageSize, D / 2] (two values a word). `rowWidth` D, when known.
 */
function checkCache(what: string, cache: tf.Tensor, rowWidth: number|null, cacheDtype: CacheDtype|undefined,
                    latentDim: number|null = null): void {
  const dtype = cacheDtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'bfloat16' && dtype !== 'float16' && dtype !== 'float8_e4m3fn') {
    throw new Error(`${what.split(' ')[0]} cacheDtype: expected 'float32', 'bfloat16', 'float16' or ` +
                    `'float8_e4m3fn', got '${dtype}'`);
  }
  if (dtype === 'float32') {
    checkShape(what, cache, [null, null, rowWidth], 'float32');
  } else if (dtype === 'float8_e4m3fn') {
    if (rowWidth === null || latentDim === null) {
      throw new Error(`${what}: a float8_e4m3fn cache needs kvLoraRank (and the rope dim) to read its rows`);
    }
    const ropeDim = rowWidth - latentDim;
    if (latentDim % 4 !== 0 || ropeDim % 2 !== 0) {
      throw new Error(`${what}: the float8_e4m3fn layout needs kvLoraRank a multiple of 4 and an even ` +
                      `rope dim, got ${latentDim} + ${ropeDim}`);
    }
    checkShape(`${what} (float8_e4m3fn rows of ${latentDim} + ${ropeDim})`, cache,
               [null, null, fp8RowLayout(latentDim, ropeDim).rowWords], 'int32');
  } else {
    if (rowWidth !== null && rowWidth % 2 !== 0) {
      throw new Error(`${what}: a ${dtype} cache needs an even row width, got ${rowWidth}`);
    }
    checkShape(`${what} (${dtype}, packed two values per int32)`, cache,
               [null, null, rowWidth === null ? null : rowWidth / 2], 'int32');
  }
}

function fusedRope_(
    q: tf.Tensor2D|tf.Tensor3D, kv: tf.Tensor2D, gamma: tf.Tensor1D, freqsCis: tf.Tensor2D,
    tokenInfo: tf.Tensor2D, cache: tf.Tensor3D, attrs: FusedRopeAttrs,
    wUkT?: tf.Tensor3D): tf.Tensor3D {
  assertSupportedBackend('fusedRope');
  if (q.rank === 2) {
    checkShape('fusedRope q', q, [null, null], 'float32');
    checkInteger('fusedRope numHeads (with a 2-D q)', attrs.numHeads as number, 1);
    checkInteger('fusedRope qkNopeHeadDim (with a 2-D q)', attrs.qkNopeHeadDim as number, 1);
  } else {
    checkShape('fusedRope q', q, [null, null, null], 'float32');
  }
  const numTokens = q.shape[0];
  checkShape('fusedRope freqsCis', freqsCis, [null, null], 'float32');
  checkShape('fusedRope gamma', gamma, [null], 'float32');
  const layout = fusedRopeLayout(q.shape, gamma.shape, freqsCis.shape, wUkT?.shape ?? null, attrs);
  const {ropeDim, nopeDim, numHeads} = layout;
  if (ropeDim % 2 !== 0 || ropeDim < 2 || nopeDim < 0) {
    throw new Error(`fusedRope freqsCis: expected an even rope width ≤ q's head dim ` +
                    `${nopeDim + ropeDim}, got ${ropeDim}`);
  }
  if (q.rank === 2 && q.shape[1] < numHeads * (nopeDim + ropeDim)) {
    throw new Error(`fusedRope q: expected rows of at least numHeads · (qkNopeHeadDim + R) = ` +
                    `${numHeads * (nopeDim + ropeDim)} columns, got ${q.shape[1]}`);
  }
  const rowWidth = gamma.shape[0] + ropeDim;
  checkShape('fusedRope kv', kv, [numTokens, null], 'float32');
  if (kv.shape[1] < rowWidth) {
    throw new Error(`fusedRope kv: expected rows ending in c_kv | k_pe (≥ L + R = ${rowWidth} ` +
                    `columns), got ${kv.shape[1]}`);
  }
  checkShape('fusedRope tokenInfo', tokenInfo, [numTokens, 3], 'int32');
  checkCache('fusedRope cache', cache, rowWidth, attrs.cacheDtype, gamma.shape[0]);
  if (wUkT !== undefined) {
    const weightDtype = attrs.weightDtype ?? 'float32';
    checkWeightDtype('fusedRope weightDtype', weightDtype);
    if (weightDtype === 'float32') {
      checkShape('fusedRope wUkT', wUkT, [numHeads, gamma.shape[0], nopeDim], 'float32');
    } else {
      if (nopeDim % 2 !== 0) throw new Error(`fusedRope wUkT: a ${weightDtype} wUkT needs an even qkNopeHeadDim, got ${nopeDim}`);
      checkShape(`fusedRope wUkT (${weightDtype}, packed two values per int32)`, wUkT,
                 [numHeads, gamma.shape[0], nopeDim / 2], 'int32');
    }
  }
  const inputs = {q, kv, gamma, freqsCis, tokenInfo, cache, ...(wUkT !== undefined ? {wUkT} : {})};
  return tf.engine().runKernel(FUSED_ROPE, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor3D;
}

function mlaDecode_(
    q: tf.Tensor3D, cache: tf.Tensor3D, lookup: tf.Tensor2D, tokenInfo: tf.Tensor2D,
    attrs: MLADecodeAttrs): tf.Tensor3D {
  assertSupportedBackend('mlaDecode');
  checkShape('mlaDecode q', q, [null, null, null], 'float32');
  const [numTokens, , rowWidth] = q.shape;
  checkCache('mlaDecode cache', cache, rowWidth, attrs.cacheDtype, attrs.kvLoraRank);
  checkShape('mlaDecode lookup', lookup, [null, null], 'int32');
  checkShape('mlaDecode tokenInfo', tokenInfo, [numTokens, 3], 'int32');
  checkInteger('mlaDecode kvLoraRank', attrs.kvLoraRank, 1, rowWidth - 1);
  checkInteger('mlaDecode maxContextLength', attrs.maxContextLength, 1);
  const inputs = {q, cache, lookup, tokenInfo};
  return tf.engine().runKernel(MLA_DECODE, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor3D;
}

function mlaPrefill_(
    q: tf.Tensor3D, kvBuffer: tf.Tensor3D, cache: tf.Tensor3D, lookup: tf.Tensor2D,
    tokenInfo: tf.Tensor2D, chunkInfo: tf.Tensor2D, attrs: MLAPrefillAttrs): tf.Tensor3D {
  assertSupportedBackend('mlaPrefill');
  checkShape('mlaPrefill q', q, [null, null, null], 'float32');
  const [numTokens, numHeads, qHeadDim] = q.shape;
  checkInteger('mlaPrefill qkNopeHeadDim', attrs.qkNopeHeadDim, 1, qHeadDim - 1);
  checkShape('mlaPrefill kvBuffer', kvBuffer, [null, numHeads, null], 'float32');
  if (kvBuffer.shape[2] <= attrs.qkNopeHeadDim) {
    throw new Error(`mlaPrefill kvBuffer: expected a last dim > qkNopeHeadDim ` +
                    `${attrs.qkNopeHeadDim} (K_nope | V), got ${kvBuffer.shape[2]}`);
  }
  const prefillRope = qHeadDim - attrs.qkNopeHeadDim;
  checkCache('mlaPrefill cache', cache, attrs.kvLoraRank === undefined ? null : attrs.kvLoraRank + prefillRope,
             attrs.cacheDtype, attrs.kvLoraRank ?? null);
  if (cacheRowWidth(cache.shape, attrs.cacheDtype, {kvLoraRank: attrs.kvLoraRank, ropeDim: prefillRope}) <= prefillRope) {
    throw new Error(`mlaPrefill cache: expected rows wider than the rope dim, got ` +
                    `${cacheRowWidth(cache.shape, attrs.cacheDtype, {kvLoraRank: attrs.kvLoraRank, ropeDim: prefillRope})} values`);
  }
  checkShape('mlaPrefill lookup', lookup, [null, null], 'int32');
  checkShape('mlaPrefill tokenInfo', tokenInfo, [numTokens, 3], 'int32');
  checkShape('mlaPrefill chunkInfo', chunkInfo, [lookup.shape[0], 3], 'int32');
  const inputs = {q, kvBuffer, cache, lookup, tokenInfo, chunkInfo};
  return tf.engine().runKernel(MLA_PREFILL, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor3D;
}

function mlaGatherRows_(cache: tf.Tensor3D, slots: tf.Tensor1D, attrs: MLAGatherRowsAttrs): tf.Tensor2D {
  assertSupportedBackend('mlaGatherRows');
  const fp8Dims = attrs.kvLoraRank !== undefined && attrs.ropeDim !== undefined;
  checkCache('mlaGatherRows cache', cache, fp8Dims ? attrs.kvLoraRank! + attrs.ropeDim! : null, attrs.cacheDtype,
             attrs.kvLoraRank ?? null);
  checkShape('mlaGatherRows slots', slots, [null], 'int32');
  checkInteger('mlaGatherRows columns', attrs.columns, 0, cacheRowWidth(cache.shape, attrs.cacheDtype, attrs));
  const inputs = {cache, slots};
  return tf.engine().runKernel(MLA_GATHER_ROWS, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** The optional parts of an MLALinear product (see src/kernels/kernel_names.ts). */
export interface MLALinearOptions {
  /** [N2, K]: output columns N1..N1+N2 from these rows (2-D x only). */
  w2?: tf.Tensor2D;
  /** [K]: RMS-normalize each x row with this weight first (needs `normEps`). */
  gamma?: tf.Tensor1D;
  normEps?: number;
  /** x [M, G, K] → y [M, G, N]. */
  tokenMajor?: boolean;
  /** How w and w2 are stored: 'float32' (default), or 16-bit packed int32 [N, K / 2]. */
  weightDtype?: WeightDtype;
  /**
   * A tensor of the output's shape added to the product in the same kernel (y = residual + x·wᵀ:
   * a decoder's residual stream).
   */
  residual?: tf.Tensor;
  /**
   * 2-D x only: x's rows may be wider than w's K, and their first K columns are read (e.g. the
   * q_a part of the fused q_a | kv_a projection). Without it a width mismatch is an Error.
   */
  readFirstColumns?: boolean;
}

function mlaLinear_<R extends tf.Rank.R2|tf.Rank.R3>(
    x: tf.Tensor<R>, w: tf.Tensor<R>, options: MLALinearOptions = {}): tf.Tensor<R> {
  assertSupportedBackend('mlaLinear');
  const {w2, gamma, normEps, residual, tokenMajor = false, readFirstColumns = false, weightDtype = 'float32'} = options;
  checkWeightDtype('mlaLinear weightDtype', weightDtype);
  // A 16-bit weight is an int32 tensor holding two values a word along K.
  const packed = weightDtype !== 'float32';
  const wDtype = packed ? 'int32' : 'float32';
  const words = (k: number) => packed ? k / 2 : k;
  const what = (name: string) => packed ? `mlaLinear ${name} (${weightDtype}, packed two values per int32)` :
                                          `mlaLinear ${name}`;
  const shape: number[] = x.shape;
  if (packed && shape[shape.length - 1] % 2 !== 0 && !readFirstColumns) {
    throw new Error(`mlaLinear x: a ${weightDtype} weight needs an even K, got x of shape [${shape.join(', ')}]`);
  }
  if (shape.length === 3) {
    checkShape('mlaLinear x', x, [null, null, null], 'float32');
    const entries = tokenMajor ? shape[1] : shape[0];
    checkShape(what('w'), w, [entries, null, words(shape[2])], wDtype);
    if (w2 !== undefined) throw new Error('mlaLinear w2: only with a 2-D x, got a 3-D x');
  } else {
    checkShape('mlaLinear x', x, [null, null], 'float32');
    if (!readFirstColumns) {
      checkShape(what('w'), w, [null, words(shape[1])], wDtype);
    } else {
      checkShape(what('w'), w, [null, null], wDtype);
      if (w.shape[1] * (packed ? 2 : 1) > shape[1]) {
        throw new Error(`mlaLinear w: expected rows of at most x's ${shape[1]} columns ` +
                        `(readFirstColumns), got shape [${w.shape.join(', ')}]`);
      }
    }
    if (w2 !== undefined) checkShape(what('w2'), w2, [null, w.shape[1]], wDtype);
  }
  const k = w.shape[w.shape.length - 1] * (packed ? 2 : 1);
  if (gamma !== undefined) {
    checkShape('mlaLinear gamma', gamma, [k], 'float32');
    if (typeof normEps !== 'number' || !(normEps >= 0)) {
      throw new Error(`mlaLinear normEps: expected a number ≥ 0 with gamma, got ${normEps}`);
    }
  }
  if (residual !== undefined) {
    const n = w.shape[w.shape.length - 2] + (w2 === undefined ? 0 : w2.shape[0]);
    const outputShape = shape.length === 2 ? [shape[0], n] : [shape[0], shape[1], n];
    checkShape('mlaLinear residual (the output\'s shape)', residual, outputShape, 'float32');
  }
  const inputs = {x, w, ...(w2 !== undefined ? {w2} : {}), ...(gamma !== undefined ? {gamma} : {}),
                  ...(residual !== undefined ? {residual} : {})};
  const attrs: MLALinearAttrs = {tokenMajor, weightDtype, ...(gamma !== undefined ? {normEps} : {})};
  return tf.engine().runKernel(LINEAR, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor<R>;
}

function checkWeightDtype(what: string, dtype: unknown): void {
  if (dtype !== 'float32' && dtype !== 'bfloat16' && dtype !== 'float16') {
    throw new Error(`${what}: expected 'float32', 'bfloat16' or 'float16', got '${String(dtype)}'`);
  }
}

/**
 * FusedRope: see src/kernels/kernel_names.ts. Writes the cache in place; with `wUkT` returns the
 * absorbed query [T, H, L + R] that mlaDecode reads.
 */
export const fusedRope = tf.op({fusedRope_});
function mlaPackHalf_(x: tf.Tensor, dtype: HalfDtype): tf.Tensor {
  assertSupportedBackend('mlaPackHalf');
  if (!isHalfDtype(dtype)) throw new Error(`mlaPackHalf dtype: expected 'bfloat16' or 'float16', got '${String(dtype)}'`);
  if (x.dtype !== 'float32') throw new Error(`mlaPackHalf x: expected dtype float32, got ${x.dtype}`);
  if (x.rank === 0 || x.shape[x.rank - 1] % 2 !== 0) {
    throw new Error(`mlaPackHalf x: expected an even last dim, got shape [${x.shape.join(', ')}]`);
  }
  return tf.engine().runKernel(MLA_PACK_HALF, {x} as unknown as tf.NamedTensorMap,
                               {dtype} as unknown as tf.NamedAttrMap) as tf.Tensor;
}

function mlaUnpackHalf_(words: tf.Tensor, dtype: HalfDtype): tf.Tensor {
  assertSupportedBackend('mlaUnpackHalf');
  if (!isHalfDtype(dtype)) throw new Error(`mlaUnpackHalf dtype: expected 'bfloat16' or 'float16', got '${String(dtype)}'`);
  if (words.dtype !== 'int32' || words.rank === 0) {
    throw new Error(`mlaUnpackHalf words: expected an int32 tensor of rank ≥ 1, got ${words.dtype} ` +
                    `[${words.shape.join(', ')}]`);
  }
  return tf.engine().runKernel(MLA_UNPACK_HALF, {x: words} as unknown as tf.NamedTensorMap,
                               {dtype} as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/** MLAPackHalf: float32 [..., K] → int32 [..., K / 2], rounded to nearest-even; see kernel_names.ts. */
export const mlaPackHalf = tf.op({mlaPackHalf_});
/** MLAUnpackHalf: int32 [..., K / 2] → float32 [..., K], exactly; see kernel_names.ts. */
export const mlaUnpackHalf = tf.op({mlaUnpackHalf_});
/** MLAGatherRows: cache rows by slot, widened to float32; see src/kernels/kernel_names.ts. */
export const mlaGatherRows = tf.op({mlaGatherRows_});
/** MLADecode: see src/kernels/kernel_names.ts. */
export const mlaDecode = tf.op({mlaDecode_});
/** MLAPrefill: see src/kernels/kernel_names.ts. */
export const mlaPrefill = tf.op({mlaPrefill_});
/**
 * MLALinear: y = x · wᵀ (x [M, K], w [N, K]; or per batch entry: x [G, M, K], w [G, N, K], or
 * tokens first with `tokenMajor`); `options` add a second weight block (wqkv) or an RMSNorm of
 * the x rows; see src/kernels/kernel_names.ts. Not differentiable (no gradient is registered):
 * use tf.matMul(x, w, false, true) to train.
 */
export const mlaLinear = tf.op({mlaLinear_});

/**
 * Merges two MLAPrefill partial results [T, H, V + 1] (normalized output | log-sum-exp) over
 * disjoint key sets into one, by log-sum-exp weighting. A side that saw no key (log-sum-exp
 * −Infinity) gets weight 0; if neither saw one, the output is 0 with a log-sum-exp of about
 * −1e30. Plain differentiable ops with no comparison on the gradient path (tfjs has no
 * gradient for those), so the layer's no-cache path trains through it.
 */
export function mergeAttentionPartials(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    const vHeadDim = a.shape[2] - 1;
    const [outA, rawLseA] = tf.split(a, [vHeadDim, 1], 2);
    const [outB, rawLseB] = tf.split(b, [vHeadDim, 1], 2);
    // Clamped, so an empty side never makes −∞ − (−∞).
    const lseA = tf.maximum(rawLseA, EMPTY_LOG_SUM_EXP);
    const lseB = tf.maximum(rawLseB, EMPTY_LOG_SUM_EXP);
    const reference = tf.maximum(lseA, lseB);
    const weightA = tf.exp(tf.sub(lseA, reference));
    const weightB = tf.exp(tf.sub(lseB, reference));
    const total = tf.add(weightA, weightB);  // ≥ 1: the larger side has weight 1
    const out = tf.div(tf.add(tf.mul(outA, weightA), tf.mul(outB, weightB)), total);
    const lse = tf.add(reference, tf.log(total));
    return tf.concat([out, lse], 2) as tf.Tensor3D;
  });
}

/** The log-sum-exp an empty partial result is clamped to when merging. */
const EMPTY_LOG_SUM_EXP = -1e30;

function mlaRmsNorm_(x: tf.Tensor2D, gamma: tf.Tensor1D, eps: number): tf.Tensor2D {
  assertSupportedBackend('mlaRmsNorm');
  checkShape('mlaRmsNorm x', x, [null, null], 'float32');
  checkShape('mlaRmsNorm gamma', gamma, [x.shape[1]], 'float32');
  if (typeof eps !== 'number' || !(eps >= 0)) throw new Error(`mlaRmsNorm eps: expected a number ≥ 0, got ${eps}`);
  return tf.engine().runKernel(MLA_RMS_NORM, {x, gamma} as unknown as tf.NamedTensorMap,
                               {eps} as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

function mlaSwiGLU_(x: tf.Tensor2D): tf.Tensor2D {
  assertSupportedBackend('mlaSwiGLU');
  checkShape('mlaSwiGLU x', x, [null, null], 'float32');
  if (x.shape[1] % 2 !== 0) {
    throw new Error(`mlaSwiGLU x: expected rows of gate | up (an even width), got shape [${x.shape.join(', ')}]`);
  }
  return tf.engine().runKernel(MLA_SWIGLU, {x} as unknown as tf.NamedTensorMap) as tf.Tensor2D;
}

/**
 * MLARMSNorm: x [T, D] → x / sqrt(mean(x²) + eps) · gamma, one kernel (see kernel_names.ts). Not
 * differentiable: ops/differentiable.ts's rmsNorm trains.
 */
export const mlaRmsNorm = tf.op({mlaRmsNorm_});
/** MLASwiGLU: [T, 2I] (gate | up) → silu(gate) · up [T, I], one kernel (see kernel_names.ts). */
export const mlaSwiGLU = tf.op({mlaSwiGLU_});
