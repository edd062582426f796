import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {MLA_SWIGLU} from '../kernel_names.js';
import {valuesOf} from './cpu_tensors.js';

/** The readable reference of MLASwiGLU (contract in ../kernel_names.ts). */
export function swiGluCpu({inputs: {x}, backend}: {inputs: {x: TensorInfo}, backend: MathBackendCPU}): TensorInfo {
  const [rows, twice] = x.shape;
  const width = twice / 2;
  const values = valuesOf(backend, x);
  const out = new Float32Array(rows * width);
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < width; i++) {
      const gate = values[t * twice + i];
      out[t * width + i] = gate / (1 + Math.exp(-gate)) * values[t * twice + width + i];
    }
  }
  return backend.makeTensorInfo([rows, width], 'float32', out);
}

export const swiGluCpuConfig: KernelConfig = {
  kernelName: MLA_SWIGLU,
  backendName: 'cpu',
  kernelFunc: swiGluCpu as unknown as KernelFunc,
};
