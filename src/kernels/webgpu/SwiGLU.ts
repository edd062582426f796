import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {MLA_SWIGLU} from '../kernel_names.js';
import {SwiGLUProgram} from './swiglu_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

/** The webgpu MLASwiGLU (contract in ../kernel_names.ts): one dispatch. */
export function swiGluWebGPU({inputs: {x}, backend}: {inputs: {x: TensorInfo}, backend: WebGPUBackend}): TensorInfo {
  const outputShape = [x.shape[0], x.shape[1] / 2];
  if (outputShape[0] * outputShape[1] === 0) return backend.makeTensorInfo(outputShape, 'float32', new Float32Array(0));
  return backend.runWebGPUProgram(new SwiGLUProgram(outputShape), [x], 'float32');
}

export const swiGluWebGPUConfig: KernelConfig = {
  kernelName: MLA_SWIGLU,
  backendName: 'webgpu',
  kernelFunc: swiGluWebGPU as unknown as KernelFunc,
};
