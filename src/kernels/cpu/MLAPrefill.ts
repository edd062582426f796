import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {MLA_PREFILL, MLAPrefillAttrs} from '../kernel_names.js';
import {cacheRow, valuesOf} from './cpu_tensors.js';
import {cacheFp8Layout, cacheRowWidth} from '../layouts.js';
import {cacheRowOf, dot, softmaxInPlace} from './reference_math.js';

/**
 * The readable reference of MLAPrefill, the non-absorbed attention over one chunk of
 * decompressed context (contract in ../kernel_names.ts).
 */
export function mlaPrefillCpu(args: {
  inputs: {q: TensorInfo, kvBuffer: TensorInfo, cache: TensorInfo, lookup: TensorInfo,
           tokenInfo: TensorInfo, chunkInfo: TensorInfo},
  backend: MathBackendCPU,
  attrs: MLAPrefillAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const [numTokens, numHeads, qHeadDim] = inputs.q.shape;
  const nopeDim = attrs.qkNopeHeadDim;
  const ropeDim = qHeadDim - nopeDim;
  const kvHeadDim = inputs.kvBuffer.shape[2];
  const vHeadDim = kvHeadDim - nopeDim;
  const pageSize = inputs.cache.shape[1];
  const rowWidth = cacheRowWidth(inputs.cache.shape, attrs.cacheDtype, {kvLoraRank: attrs.kvLoraRank, ropeDim});
  const kvLoraRank = rowWidth - ropeDim;
  const fp8 = cacheFp8Layout(attrs.cacheDtype, kvLoraRank, ropeDim);
  const maxPagesPerSeq = inputs.lookup.shape[1];

  const q = valuesOf(backend, inputs.q);
  const kvBuffer = valuesOf(backend, inputs.kvBuffer);
  const cache = valuesOf(backend, inputs.cache);
  const lookup = valuesOf(backend, inputs.lookup);
  const tokenInfo = valuesOf(backend, inputs.tokenInfo);
  const chunkInfo = valuesOf(backend, inputs.chunkInfo);

  const outWidth = vHeadDim + 1;
  const out = new Float32Array(numTokens * numHeads * outWidth);
  for (let t = 0; t < numTokens; t++) {
    const batchRow = tokenInfo[t * 3];
    const position = tokenInfo[t * 3 + 1];
    const bufferStart = chunkInfo[batchRow * 3];
    const firstToken = chunkInfo[batchRow * 3 + 1];
    const numRows = chunkInfo[batchRow * 3 + 2];
    // The keys of this chunk that the token sees: tokens firstToken.. of its sequence, ≤ position.
    const visibleRows = Math.max(0, Math.min(numRows, position - firstToken + 1));
    for (let h = 0; h < numHeads; h++) {
      const qStart = (t * numHeads + h) * qHeadDim;
      const scores: number[] = [];
      for (let j = 0; j < visibleRows; j++) {
        const kvStart = ((bufferStart + j) * numHeads + h) * kvHeadDim;
        const slot = cacheRowOf(lookup, batchRow * maxPagesPerSeq, pageSize, firstToken + j);
        const keyRow = cacheRow(cache, slot, rowWidth, attrs.cacheDtype, fp8);
        const nopeScore = dot(q, qStart, kvBuffer, kvStart, nopeDim);
        const ropeScore = dot(q, qStart + nopeDim, keyRow, kvLoraRank, ropeDim);
        scores.push(attrs.scale * (nopeScore + ropeScore));
      }
      const logSumExp = softmaxInPlace(scores);
      const outStart = (t * numHeads + h) * outWidth;
      for (let e = 0; e < vHeadDim; e++) {
        let sum = 0;
        for (let j = 0; j < visibleRows; j++) {
          sum += scores[j] * kvBuffer[((bufferStart + j) * numHeads + h) * kvHeadDim + nopeDim + e];
        }
        out[outStart + e] = sum;
      }
      out[outStart + vHeadDim] = logSumExp;
    }
  }
  return backend.makeTensorInfo([numTokens, numHeads, outWidth], 'float32', out);
}

export const mlaPrefillCpuConfig: KernelConfig = {
  kernelName: MLA_PREFILL,
  backendName: 'cpu',
  kernelFunc: mlaPrefillCpu as unknown as KernelFunc,
};
