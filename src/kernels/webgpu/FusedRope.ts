import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {FUSED_ROPE, FusedRopeAttrs} from '../kernel_names.js';
import {RopeCacheWriteProgram, RopeQProgram} from './fused_rope_webgpu.js';
import {invalidateCpuCopy, WebGPUBackend} from './webgpu_util.js';

/**
 * The webgpu FusedRope (contract in ../kernel_names.ts): one program writes each token's
 * cache row `[RMSNorm(c_kv) | rope(k_pe)]` straight into the cache's buffer (the cache is the
 * program's output, so nothing is copied), a second one returns the roped q.
 * Host-side it reads shapes and attrs only, never GPU data.
 */
export function fusedRopeWebGPU(args: {
  inputs: {q: TensorInfo, kv: TensorInfo, gamma: TensorInfo, freqsCis: TensorInfo,
           tokenInfo: TensorInfo, cache: TensorInfo},
  backend: WebGPUBackend,
  attrs: FusedRopeAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const {q, kv, gamma, freqsCis, tokenInfo, cache} = inputs;
  const numTokens = q.shape[0];
  const interleaved = Boolean(attrs.interleaved);  // as the cpu kernel reads it

  if (numTokens > 0) {
    const cacheProgram = new RopeCacheWriteProgram(cache.shape, numTokens, interleaved);
    backend.runWebGPUProgram(cacheProgram, [kv, gamma, freqsCis, tokenInfo], 'float32',
                             [{type: 'float32', data: [attrs.eps]}], cache);
    invalidateCpuCopy(backend, cache);
  }
  const qProgram = new RopeQProgram(q.shape, interleaved);
  return backend.runWebGPUProgram(qProgram, [q, freqsCis, tokenInfo], 'float32');
}

export const fusedRopeWebGPUConfig: KernelConfig = {
  kernelName: FUSED_ROPE,
  backendName: 'webgpu',
  kernelFunc: fusedRopeWebGPU as unknown as KernelFunc,
};
