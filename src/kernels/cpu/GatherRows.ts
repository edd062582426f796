import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {MLA_GATHER_ROWS, MLAGatherRowsAttrs} from '../kernel_names.js';
import {cacheFp8Layout, cacheRowWidth} from '../layouts.js';
import {cacheRow, valuesOf} from './cpu_tensors.js';

/** The readable reference of MLAGatherRows (contract in ../kernel_names.ts). */
export function gatherRowsCpu(args: {
  inputs: {cache: TensorInfo, slots: TensorInfo},
  backend: MathBackendCPU,
  attrs: MLAGatherRowsAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const rowWidth = cacheRowWidth(inputs.cache.shape, attrs.cacheDtype, attrs);
  const fp8 = cacheFp8Layout(attrs.cacheDtype, attrs.kvLoraRank ?? 0, attrs.ropeDim ?? 0);
  const cache = valuesOf(backend, inputs.cache);
  const slots = valuesOf(backend, inputs.slots);
  const out = new Float32Array(slots.length * attrs.columns);
  for (let r = 0; r < slots.length; r++) {
    out.set(cacheRow(cache, slots[r], rowWidth, attrs.cacheDtype, fp8).subarray(0, attrs.columns), r * attrs.columns);
  }
  return backend.makeTensorInfo([slots.length, attrs.columns], 'float32', out);
}

export const gatherRowsCpuConfig: KernelConfig = {
  kernelName: MLA_GATHER_ROWS,
  backendName: 'cpu',
  kernelFunc: gatherRowsCpu as unknown as KernelFunc,
};
