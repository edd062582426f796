import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {MLA_RMS_NORM, MLARMSNormAttrs} from '../kernel_names.js';
import {valuesOf} from './cpu_tensors.js';

/** The readable reference of MLARMSNorm (contract in ../kernel_names.ts). */
export function rmsNormCpu({inputs: {x, gamma}, backend, attrs}: {
  inputs: {x: TensorInfo, gamma: TensorInfo}, backend: MathBackendCPU, attrs: MLARMSNormAttrs & NamedAttrMap,
}): TensorInfo {
  const [rows, width] = x.shape;
  const values = valuesOf(backend, x);
  const weights = valuesOf(backend, gamma);
  const out = new Float32Array(rows * width);
  for (let t = 0; t < rows; t++) {
    let sumSquares = 0;
    for (let d = 0; d < width; d++) sumSquares += values[t * width + d] ** 2;
    const inverseRms = 1 / Math.sqrt(sumSquares / width + attrs.eps);
    for (let d = 0; d < width; d++) out[t * width + d] = values[t * width + d] * inverseRms * weights[d];
  }
  return backend.makeTensorInfo([rows, width], 'float32', out);
}

export const rmsNormCpuConfig: KernelConfig = {
  kernelName: MLA_RMS_NORM,
  backendName: 'cpu',
  kernelFunc: rmsNormCpu as unknown as KernelFunc,
};
