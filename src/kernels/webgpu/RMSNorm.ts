import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {MLA_RMS_NORM, MLARMSNormAttrs} from '../kernel_names.js';
import {RMS_NORM_PARAMS, RMSNormProgram} from './rms_norm_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

/** The webgpu MLARMSNorm (contract in ../kernel_names.ts): one dispatch, a workgroup per row. */
export function rmsNormWebGPU({inputs: {x, gamma}, backend, attrs}: {
  inputs: {x: TensorInfo, gamma: TensorInfo}, backend: WebGPUBackend, attrs: MLARMSNormAttrs & NamedAttrMap,
}): TensorInfo {
  if (x.shape[0] === 0) return backend.makeTensorInfo(x.shape, 'float32', new Float32Array(0));
  const program = new RMSNormProgram(RMS_NORM_PARAMS, x.shape);
  return backend.runWebGPUProgram(program, [x, gamma], 'float32', [{type: 'float32', data: [attrs.eps]}]);
}

export const rmsNormWebGPUConfig: KernelConfig = {
  kernelName: MLA_RMS_NORM,
  backendName: 'webgpu',
  kernelFunc: rmsNormWebGPU as unknown as KernelFunc,
};
