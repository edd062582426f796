/**
 * Which products of a cached step go through MLALinear and which through tf.matMul. One place,
 * so the decode path, the projections and the prefill decompression agree.
 */
import * as tf from '@tensorflow/tfjs-core';
import {isSoftwareAdapter, WebGPUBackend} from '../kernels/webgpu/webgpu_util.js';

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
