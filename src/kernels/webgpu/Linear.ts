import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {LINEAR} from '../kernel_names.js';
import {LinearProgram, linearUniforms} from './linear_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

/**
 * The webgpu MLALinear (contract in ../kernel_names.ts): y = x · wᵀ (per batch entry when
 * batched: one dispatch for all of them) by LinearProgram (a new program object per call: tfjs rewrites its shaderKey).
 * Host-side it reads shapes only, never GPU data.
 */
export function linearWebGPU(args: {
  inputs: {x: TensorInfo, w: TensorInfo},
  backend: WebGPUBackend,
}): TensorInfo {
  const {inputs, backend} = args;
  const {x, w} = inputs;
  const batched = x.shape.length === 3;
  const [g, m, k] = batched ? x.shape : [1, ...x.shape];
  const n = w.shape[w.shape.length - 2];
  const outShape = batched ? [g, m, n] : [m, n];
  if (g === 0 || m === 0 || n === 0) {
    return backend.makeTensorInfo(outShape, 'float32', new Float32Array(0));
  }
  if (k === 0) return backend.makeTensorInfo(outShape, 'float32', new Float32Array(g * m * n));
  const program = new LinearProgram(batched ? g : null, m, k, n);
  return backend.runWebGPUProgram(program, [x, w], 'float32', linearUniforms(m, k, n, program));
}

export const linearWebGPUConfig: KernelConfig = {
  kernelName: LINEAR,
  backendName: 'webgpu',
  kernelFunc: linearWebGPU as unknown as KernelFunc,
};
