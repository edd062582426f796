import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {MLA_DECODE, MLADecodeAttrs} from '../kernel_names.js';
import {cacheRow, valuesOf} from './cpu_tensors.js';
import {cacheFp8Layout} from '../layouts.js';
import {cacheRowOf, dot, softmaxInPlace} from './reference_math.js';

/** The readable reference of MLADecode, the absorbed attention (contract in ../kernel_names.ts). */
export function mlaDecodeCpu(args: {
  inputs: {q: TensorInfo, cache: TensorInfo, lookup: TensorInfo, tokenInfo: TensorInfo},
  backend: MathBackendCPU,
  attrs: MLADecodeAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const [numTokens, numHeads, rowWidth] = inputs.q.shape;
  const pageSize = inputs.cache.shape[1];
  const maxPagesPerSeq = inputs.lookup.shape[1];
  const kvLoraRank = attrs.kvLoraRank;
  const fp8 = cacheFp8Layout(attrs.cacheDtype, kvLoraRank, rowWidth - kvLoraRank);

  const q = valuesOf(backend, inputs.q);
  const cache = valuesOf(backend, inputs.cache);
  const lookup = valuesOf(backend, inputs.lookup);
  const tokenInfo = valuesOf(backend, inputs.tokenInfo);

  const out = new Float32Array(numTokens * numHeads * kvLoraRank);
  for (let t = 0; t < numTokens; t++) {
    const batchRow = tokenInfo[t * 3];
    const position = tokenInfo[t * 3 + 1];
    // Causal: keys 0..position of the token's own sequence, as float32 rows.
    const keyRows: Float32Array[] = [];
    for (let k = 0; k <= position; k++) {
      const slot = cacheRowOf(lookup, batchRow * maxPagesPerSeq, pageSize, k);
      keyRows.push(cacheRow(cache, slot, rowWidth, attrs.cacheDtype, fp8));
    }
    for (let h = 0; h < numHeads; h++) {
      const qStart = (t * numHeads + h) * rowWidth;
      const weights = keyRows.map((row) => attrs.scale * dot(q, qStart, row, 0, rowWidth));
      softmaxInPlace(weights);
      const outStart = (t * numHeads + h) * kvLoraRank;
      for (let l = 0; l < kvLoraRank; l++) {
        let sum = 0;
        for (let k = 0; k < keyRows.length; k++) sum += weights[k] * keyRows[k][l];
        out[outStart + l] = sum;
      }
    }
  }
  return backend.makeTensorInfo([numTokens, numHeads, kvLoraRank], 'float32', out);
}

export const mlaDecodeCpuConfig: KernelConfig = {
  kernelName: MLA_DECODE,
  backendName: 'cpu',
  kernelFunc: mlaDecodeCpu as unknown as KernelFunc,
};
