/**
 * Which products of a cached step go through MLALinear and which through tf.matMul. One place,
 * so the decode path, the projections and the prefill decompression agree.
 */
import * as tf from '@tensorflow/tfjs-core';
import {isSoftwareAdapter, WebGPUBackend} from '../kernels/webgpu/webgpu_util.js';
import {mlaLinear, MLALinearOptions, mlaRmsNorm} from '../ops/mla_ops.js';

/** Products with at most this many rows (decode steps) go through MLALinear on any webgpu adapter. */
export const DECODE_LINEAR_ROWS = 8;

/**
 * Whether products with `rows` rows use MLALinear: on webgpu for decode steps (it streams w
 * once, where tfjs's tiled matMul re-reads it) and on software adapters for every row count
 * (tfjs's tiled matMul is about 10× slower there: bench/README.md). On a GPU, tfjs's
 * workgroup-tiled matMul keeps larger products; on cpu tf.matMul is the fast path.
 */
export function useLinearKernel(rows: number): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  return rows <= DECODE_LINEAR_ROWS || isSoftwareAdapter(tf.backend() as unknown as WebGPUBackend);
}

/**
 * x · wᵀ with MLALinear's options (a second weight block, an RMSNorm prologue, a residual) as one
 * MLALinear when `viaLinear` (see useLinearKernel) or the weight is 16-bit (only MLALinear reads
 * packed weights); otherwise the same product in tf ops (MLARMSNorm, tf.matMul, concat, add).
 */
export function linearProduct(x: tf.Tensor2D, w: tf.Tensor2D, viaLinear: boolean,
                              options: MLALinearOptions = {}): tf.Tensor2D {
  if (viaLinear || (options.weightDtype ?? 'float32') !== 'float32') return mlaLinear(x, w, options);
  const {gamma, normEps, w2, residual} = options;
  const input = gamma === undefined ? x : mlaRmsNorm(x, gamma, normEps ?? 0);
  let y = tf.matMul(input, w, false, true) as tf.Tensor2D;
  if (w2 !== undefined) y = tf.concat([y, tf.matMul(input, w2, false, true)], 1) as tf.Tensor2D;
  return residual === undefined ? y : tf.add(residual, y) as tf.Tensor2D;
}
