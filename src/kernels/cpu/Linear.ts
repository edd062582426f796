import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {LINEAR} from '../kernel_names.js';
import {valuesOf} from './cpu_tensors.js';

/** The readable reference of MLALinear (contract in ../kernel_names.ts): y = x · wᵀ. */
export function linearCpu(args: {
  inputs: {x: TensorInfo, w: TensorInfo},
  backend: MathBackendCPU,
}): TensorInfo {
  const {inputs, backend} = args;
  const [m, k] = inputs.x.shape;
  const n = inputs.w.shape[0];
  const x = valuesOf(backend, inputs.x);
  const w = valuesOf(backend, inputs.w);
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;  // float64
      for (let l = 0; l < k; l++) sum += x[i * k + l] * w[j * k + l];
      y[i * n + j] = sum;
    }
  }
  return backend.makeTensorInfo([m, n], 'float32', y);
}

export const linearCpuConfig: KernelConfig = {
  kernelName: LINEAR,
  backendName: 'cpu',
  kernelFunc: linearCpu as unknown as KernelFunc,
};
