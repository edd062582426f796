import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {MLA_GATHER_ROWS, MLAGatherRowsAttrs} from '../kernel_names.js';
import {cacheFp8Layout, cacheRowWidth} from '../layouts.js';
import {GatherRowsProgram} from './gather_rows_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

/** The webgpu MLAGatherRows (contract in ../kernel_names.ts): one dispatch. */
export function gatherRowsWebGPU(args: {
  inputs: {cache: TensorInfo, slots: TensorInfo},
  backend: WebGPUBackend,
  attrs: MLAGatherRowsAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const outputShape = [inputs.slots.shape[0], attrs.columns];
  const fp8 = cacheFp8Layout(attrs.cacheDtype, attrs.kvLoraRank ?? 0, attrs.ropeDim ?? 0);
  const program = new GatherRowsProgram({cacheDtype: attrs.cacheDtype, fp8}, outputShape);
  return backend.runWebGPUProgram(program, [inputs.cache, inputs.slots], 'float32',
                                  [{type: 'int32', data: [cacheRowWidth(inputs.cache.shape, attrs.cacheDtype, attrs)]}]);
}

export const gatherRowsWebGPUConfig: KernelConfig = {
  kernelName: MLA_GATHER_ROWS,
  backendName: 'webgpu',
  kernelFunc: gatherRowsWebGPU as unknown as KernelFunc,
};
