import * as tf from '@tensorflow/tfjs-core';
import {FUSED_ROPE, FusedRopeAttrs, MLA_DECODE, MLA_PREFILL, MLADecodeAttrs, MLAPrefillAttrs, LINEAR} from '../kernels/kernel_names.js';
import {checkInteger, checkShape} from './check.js';
import {assertSupportedBackend} from './backend_check.js';

/**
 * The op wrappers of the kernels: each checks shapes and dtypes against the contract in
 * src/kernels/kernel_names.ts, then runs the kernel registered for the active backend.
 */

function fusedRope_(
    q: tf.Tensor3D, kv: tf.Tensor2D, gamma: tf.Tensor1D, freqsCis: tf.Tensor2D,
    tokenInfo: tf.Tensor2D, cache: tf.Tensor3D, attrs: FusedRopeAttrs): tf.Tensor3D {
  assertSupportedBackend('fusedRope');
  checkShape('fusedRope q', q, [null, null, null], 'float32');
  const [numTokens, , qHeadDim] = q.shape;
  checkShape('fusedRope freqsCis', freqsCis, [null, null], 'float32');
  const ropeDim = freqsCis.shape[1];
  if (ropeDim % 2 !== 0 || ropeDim > qHeadDim) {
    throw new Error(`fusedRope freqsCis: expected an even rope width ≤ q's head dim ${qHeadDim}, ` +
                    `got ${ropeDim}`);
  }
  checkShape('fusedRope gamma', gamma, [null], 'float32');
  const rowWidth = gamma.shape[0] + ropeDim;
  checkShape('fusedRope kv', kv, [numTokens, rowWidth], 'float32');
  checkShape('fusedRope tokenInfo', tokenInfo, [numTokens, 3], 'int32');
  checkShape('fusedRope cache', cache, [null, null, rowWidth], 'float32');
  const inputs = {q, kv, gamma, freqsCis, tokenInfo, cache};
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

function mlaLinear_<R extends tf.Rank.R2|tf.Rank.R3>(x: tf.Tensor<R>, w: tf.Tensor<R>): tf.Tensor<R> {
  assertSupportedBackend('mlaLinear');
  const shape: number[] = x.shape;
  if (shape.length === 3) {
    checkShape('mlaLinear x', x, [null, null, null], 'float32');
    checkShape('mlaLinear w', w, [shape[0], null, shape[2]], 'float32');
  } else {
    checkShape('mlaLinear x', x, [null, null], 'float32');
    checkShape('mlaLinear w', w, [null, shape[1]], 'float32');
  }
  const inputs = {x, w};
  return tf.engine().runKernel(LINEAR, inputs as unknown as tf.NamedTensorMap) as tf.Tensor<R>;
}

/** FusedRope: see src/kernels/kernel_names.ts. Writes the cache in place. */
export const fusedRope = tf.op({fusedRope_});
/** MLADecode: see src/kernels/kernel_names.ts. */
export const mlaDecode = tf.op({mlaDecode_});
/** MLAPrefill: see src/kernels/kernel_names.ts. */
export const mlaPrefill = tf.op({mlaPrefill_});
/**
 * MLALinear: y = x · wᵀ (x [M, K], w [N, K]; or per batch entry: x [G, M, K], w [G, N, K]);
 * see src/kernels/kernel_names.ts. Not
 * differentiable (no gradient is registered): use tf.matMul(x, w, false, true) to train.
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
