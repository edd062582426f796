import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {LINEAR} from '../kernel_names.js';
import {valuesOf} from './cpu_tensors.js';

/**
 * The readable reference of MLALinear (contract in ../kernel_names.ts): y = x · wᵀ, per batch
 * entry g when x and w have a leading batch dim.
 */
export function linearCpu(args: {
  inputs: {x: TensorInfo, w: TensorInfo},
  backend: MathBackendCPU,
}): TensorInfo {
  const {inputs, backend} = args;
  const batched = inputs.x.shape.length === 3;
  const [g, m, k] = batched ? inputs.x.shape : [1, ...inputs.x.shape];
  const n = inputs.w.shape[inputs.w.shape.length - 2];
  const x = valuesOf(backend, inputs.x);
  const w = valuesOf(backend, inputs.w);
  const y = new Float32Array(g * m * n);
  for (let b = 0; b < g; b++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;  // float64
        for (let l = 0; l < k; l++) sum += x[(b * m + i) * k + l] * w[(b * n + j) * k + l];
        y[(b * m + i) * n + j] = sum;
      }
    }
  }
  return backend.makeTensorInfo(batched ? [g, m, n] : [m, n], 'float32', y);
}

export const linearCpuConfig: KernelConfig = {
  kernelName: LINEAR,
  backendName: 'cpu',
  kernelFunc: linearCpu as unknown as KernelFunc,
};
