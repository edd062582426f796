import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {SKINNY_MATMUL} from '../kernel_names.js';
import {SkinnyMatMulProgram, skinnyVectorWidth} from './skinny_matmul_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

/**
 * The webgpu MLASkinnyMatMul (contract in ../kernel_names.ts): y = x · wᵀ with M ≤ 8 rows by
 * SkinnyMatMulProgram (a new program object per call: tfjs rewrites its shaderKey).
 * Host-side it reads shapes only, never GPU data.
 */
export function skinnyMatMulWebGPU(args: {
  inputs: {x: TensorInfo, w: TensorInfo},
  backend: WebGPUBackend,
}): TensorInfo {
  const {inputs, backend} = args;
  const {x, w} = inputs;
  const [m, k] = x.shape;
  const n = w.shape[0];
  if (m === 0 || n === 0) return backend.makeTensorInfo([m, n], 'float32', new Float32Array(0));
  if (k === 0) return backend.makeTensorInfo([m, n], 'float32', new Float32Array(m * n));
  const program = new SkinnyMatMulProgram(m, k, n);
  return backend.runWebGPUProgram(program, [x, w], 'float32', [
    {type: 'int32', data: [k / skinnyVectorWidth(k)]},
    {type: 'int32', data: [n]},
  ]);
}

export const skinnyMatMulWebGPUConfig: KernelConfig = {
  kernelName: SKINNY_MATMUL,
  backendName: 'webgpu',
  kernelFunc: skinnyMatMulWebGPU as unknown as KernelFunc,
};
