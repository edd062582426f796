import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {MLA_PREFILL, MLAPrefillAttrs} from '../kernel_names.js';
import {cacheRowWidth} from '../layouts.js';
import {chooseMLAPrefillTiling, MLAPrefillProgram} from './mla_prefill_webgpu.js';
import {deviceLimits, isSoftwareAdapter} from './webgpu_util.js';

/** Workgroup memory the kernel plans for, whatever more the device allows (SwiftShader's plain limit). */
const WORKGROUP_BYTES = 16384;
/** Invocations per workgroup the kernel plans for at most. */
const MAX_INVOCATIONS = 256;

/**
 * MLAPrefill on webgpu: one flash-attention dispatch (see mla_prefill_webgpu.ts), same contract
 * as the cpu reference kernel (../kernel_names.ts). Nothing is read back and no intermediate
 * tensor is made.
 */
export function mlaPrefillWebGPU(args: {
  inputs: {q: TensorInfo, kvBuffer: TensorInfo, cache: TensorInfo, lookup: TensorInfo,
           tokenInfo: TensorInfo, chunkInfo: TensorInfo},
  backend: WebGPUBackend,
  attrs: MLAPrefillAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const {q, kvBuffer, cache, lookup, tokenInfo, chunkInfo} = inputs;
  const [numTokens, numHeads, qHeadDim] = q.shape;
  const nopeDim = attrs.qkNopeHeadDim;
  const ropeDim = qHeadDim - nopeDim;
  const vDim = kvBuffer.shape[2] - nopeDim;
  const cacheDtype = attrs.cacheDtype ?? 'float32';
  const kvLoraRank = cacheRowWidth(cache.shape, cacheDtype, {kvLoraRank: attrs.kvLoraRank, ropeDim}) - ropeDim;
  const dims = {numHeads, nopeDim, ropeDim, vDim, kvLoraRank, cacheDtype};

  const limits = deviceLimits(backend);
  const tiling = chooseMLAPrefillTiling(
      dims, Math.min(WORKGROUP_BYTES, limits.storageBytes),
      Math.min(MAX_INVOCATIONS, limits.invocations, limits.sizeX), isSoftwareAdapter(backend));
  const program = new MLAPrefillProgram(numTokens, dims, tiling);
  return backend.runWebGPUProgram(
      program, [q, kvBuffer, cache, lookup, tokenInfo, chunkInfo], 'float32',
      [{type: 'float32', data: [attrs.scale]}]);
}

export const mlaPrefillWebGPUConfig: KernelConfig = {
  kernelName: MLA_PREFILL,
  backendName: 'webgpu',
  kernelFunc: mlaPrefillWebGPU as unknown as KernelFunc,
};
