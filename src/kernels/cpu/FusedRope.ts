import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {FUSED_ROPE, FusedRopeAttrs} from '../kernel_names.js';
import {valuesOf} from './cpu_tensors.js';
import {rmsNormRow, ropeRow} from './reference_math.js';

/** The readable reference of FusedRope (contract in ../kernel_names.ts). */
export function fusedRopeCpu(args: {
  inputs: {q: TensorInfo, kv: TensorInfo, gamma: TensorInfo, freqsCis: TensorInfo,
           tokenInfo: TensorInfo, cache: TensorInfo},
  backend: MathBackendCPU,
  attrs: FusedRopeAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const [numTokens, numHeads, qHeadDim] = inputs.q.shape;
  const ropeDim = inputs.freqsCis.shape[1];
  const nopeDim = qHeadDim - ropeDim;
  const kvLoraRank = inputs.gamma.shape[0];
  const rowWidth = kvLoraRank + ropeDim;

  const q = valuesOf(backend, inputs.q);
  const kv = valuesOf(backend, inputs.kv);
  const gamma = valuesOf(backend, inputs.gamma);
  const freqsCis = valuesOf(backend, inputs.freqsCis);
  const tokenInfo = valuesOf(backend, inputs.tokenInfo);
  const cache = valuesOf(backend, inputs.cache) as Float32Array;

  const qOut = Float32Array.from(q);
  for (let t = 0; t < numTokens; t++) {
    const position = tokenInfo[t * 3 + 1];
    const slot = tokenInfo[t * 3 + 2];
    const freqsRow = position * ropeDim;
    for (let h = 0; h < numHeads; h++) {
      const ropeStart = (t * numHeads + h) * qHeadDim + nopeDim;
      ropeRow(q, ropeStart, ropeDim, freqsCis, freqsRow, attrs.interleaved, qOut, ropeStart);
    }
    // The cache row: [RMSNorm(c_kv) | rope(k_pe)], written into the cache's own storage.
    const kvStart = t * rowWidth;
    const cacheStart = slot * rowWidth;
    rmsNormRow(kv, kvStart, kvLoraRank, gamma, attrs.eps, cache, cacheStart);
    ropeRow(kv, kvStart + kvLoraRank, ropeDim, freqsCis, freqsRow, attrs.interleaved, cache,
            cacheStart + kvLoraRank);
  }
  return backend.makeTensorInfo([numTokens, numHeads, qHeadDim], 'float32', qOut);
}

export const fusedRopeCpuConfig: KernelConfig = {
  kernelName: FUSED_ROPE,
  backendName: 'cpu',
  kernelFunc: fusedRopeCpu as unknown as KernelFunc,
};
