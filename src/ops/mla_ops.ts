import * as tf from '@tensorflow/tfjs-core';
import {FUSED_ROPE, FusedRopeAttrs, LINEAR, MLA_DECODE, MLA_PREFILL, MLADecodeAttrs, MLALinearAttrs, MLAPrefillAttrs} from '../kernels/kernel_names.js';
import {fusedRopeLayout} from '../kernels/layouts.js';
import {checkInteger, checkShape} from './check.js';
import {assertSupportedBackend} from './backend_check.js';

/**
 * The op wrappers of the kernels: each checks shapes and dtypes against the contract in
 * src/kernels/kernel_names.ts, then runs the kernel registered for the active backend.
 */

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
  checkShape('fusedRope cache', cache, [null, null, rowWidth], 'float32');
  if (wUkT !== undefined) {
    checkShape('fusedRope wUkT', wUkT, [numHeads, gamma.shape[0], nopeDim], 'float32');
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
  checkShape('mlaDecode cache', cache, [null, null, rowWidth], 'float32');
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
  checkShape('mlaPrefill cache', cache, [null, null, null], 'float32');
  if (cache.shape[2] <= qHeadDim - attrs.qkNopeHeadDim) {
    throw new Error(`mlaPrefill cache: expected rows wider than the rope dim, got ${cache.shape[2]}`);
  }
  checkShape('mlaPrefill lookup', lookup, [null, null], 'int32');
  checkShape('mlaPrefill tokenInfo', tokenInfo, [numTokens, 3], 'int32');
  checkShape('mlaPrefill chunkInfo', chunkInfo, [lookup.shape[0], 3], 'int32');
  const inputs = {q, kvBuffer, cache, lookup, tokenInfo, chunkInfo};
  return tf.engine().runKernel(MLA_PREFILL, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor3D;
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
  /**
   * 2-D x only: x's rows may be wider than w's K, and their first K columns are read (e.g. the
   * q_a part of the fused q_a | kv_a projection). Without it a width mismatch is an Error.
   */
  readFirstColumns?: boolean;
}

function mlaLinear_<R extends tf.Rank.R2|tf.Rank.R3>(
    x: tf.Tensor<R>, w: tf.Tensor<R>, options: MLALinearOptions = {}): tf.Tensor<R> {
  assertSupportedBackend('mlaLinear');
  const {w2, gamma, normEps, tokenMajor = false, readFirstColumns = false} = options;
  const shape: number[] = x.shape;
  if (shape.length === 3) {
    checkShape('mlaLinear x', x, [null, null, null], 'float32');
    const entries = tokenMajor ? shape[1] : shape[0];
    checkShape('mlaLinear w', w, [entries, null, shape[2]], 'float32');
    if (w2 !== undefined) throw new Error('mlaLinear w2: only with a 2-D x, got a 3-D x');
  } else {
    checkShape('mlaLinear x', x, [null, null], 'float32');
    if (!readFirstColumns) {
      checkShape('mlaLinear w', w, [null, shape[1]], 'float32');
    } else {
      checkShape('mlaLinear w', w, [null, null], 'float32');
      if (w.shape[1] > shape[1]) {
        throw new Error(`mlaLinear w: expected rows of at most x's ${shape[1]} columns ` +
                        `(readFirstColumns), got shape [${w.shape.join(', ')}]`);
      }
    }
    if (w2 !== undefined) checkShape('mlaLinear w2', w2, [null, w.shape[1]], 'float32');
  }
  const k = w.shape[w.shape.length - 1];
  if (gamma !== undefined) {
    checkShape('mlaLinear gamma', gamma, [k], 'float32');
    if (typeof normEps !== 'number' || !(normEps >= 0)) {
      throw new Error(`mlaLinear normEps: expected a number ≥ 0 with gamma, got ${normEps}`);
    }
  }
  const inputs = {x, w, ...(w2 !== undefined ? {w2} : {}), ...(gamma !== undefined ? {gamma} : {})};
  const attrs: MLALinearAttrs = {tokenMajor, ...(gamma !== undefined ? {normEps} : {})};
  return tf.engine().runKernel(LINEAR, inputs as unknown as tf.NamedTensorMap,
                               attrs as unknown as tf.NamedAttrMap) as tf.Tensor<R>;
}

/**
 * FusedRope: see src/kernels/kernel_names.ts. Writes the cache in place; with `wUkT` returns the
 * absorbed query [T, H, L + R] that mlaDecode reads.
 */
export const fusedRope = tf.op({fusedRope_});
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
