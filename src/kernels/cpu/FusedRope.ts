import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {FUSED_ROPE, FusedRopeAttrs} from '../kernel_names.js';
import {cacheFp8Layout, fusedRopeLayout} from '../layouts.js';
import {valuesOf, writeCacheRow} from './cpu_tensors.js';
import {dot, rmsNormRow, ropeRow} from './reference_math.js';
import {unpackHalf} from '../../precision/half.js';

/** The readable reference of FusedRope (contract in ../kernel_names.ts). */
export function fusedRopeCpu(args: {
  inputs: {q: TensorInfo, kv: TensorInfo, gamma: TensorInfo, freqsCis: TensorInfo,
           tokenInfo: TensorInfo, cache: TensorInfo, wUkT?: TensorInfo},
  backend: MathBackendCPU,
  attrs: FusedRopeAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const layout = fusedRopeLayout(inputs.q.shape, inputs.gamma.shape, inputs.freqsCis.shape,
                                 inputs.wUkT?.shape ?? null, attrs);
  const {numTokens, numHeads, nopeDim, ropeDim, latentDim, qRowStride} = layout;
  const headWidth = nopeDim + ropeDim;
  const outWidth = layout.outputShape[2];
  const rowWidth = latentDim + ropeDim;
  const kvRowStride = inputs.kv.shape[1];

  const q = valuesOf(backend, inputs.q);
  const kv = valuesOf(backend, inputs.kv);
  const gamma = valuesOf(backend, inputs.gamma);
  const freqsCis = valuesOf(backend, inputs.freqsCis);
  const tokenInfo = valuesOf(backend, inputs.tokenInfo);
  const cache = valuesOf(backend, inputs.cache);
  const row = new Float32Array(rowWidth);
  const fp8 = cacheFp8Layout(attrs.cacheDtype, latentDim, ropeDim);
  const wUkT = inputs.wUkT === undefined ? null : valuesOf(backend, inputs.wUkT);
  const weightDtype = attrs.weightDtype ?? 'float32';

  const qOut = new Float32Array(numTokens * numHeads * outWidth);
  for (let t = 0; t < numTokens; t++) {
    const position = tokenInfo[t * 3 + 1];
    const slot = tokenInfo[t * 3 + 2];
    const freqsRow = position * ropeDim;
    for (let h = 0; h < numHeads; h++) {
      const qStart = t * qRowStride + h * headWidth;
      const outStart = (t * numHeads + h) * outWidth;
      if (wUkT === null) {
        // q roped: the nope columns as they are, then the rope columns rotated.
        qOut.set(q.subarray(qStart, qStart + nopeDim), outStart);
      } else {
        // The absorbed query: q_lat[l] = Σ_d W_UK[h, d, l] · q_nope[d] = wUkT[h, l, :] · q_nope
        // (wUkT's rows widened from 16 bits when stored so).
        for (let l = 0; l < latentDim; l++) {
          const rowIndex = h * latentDim + l;
          const weightRow = weightDtype === 'float32' ? wUkT : unpackHalf(wUkT, weightDtype, nopeDim, rowIndex * nopeDim);
          qOut[outStart + l] = dot(weightRow, weightDtype === 'float32' ? rowIndex * nopeDim : 0, q, qStart, nopeDim);
        }
      }
      ropeRow(q, qStart + nopeDim, ropeDim, freqsCis, freqsRow, attrs.interleaved, qOut,
              outStart + outWidth - ropeDim);
    }
    // The cache row: [RMSNorm(c_kv) | rope(k_pe)] in float32, then written into the cache's
    // own storage (rounded to nearest-even for 16-bit storage).
    const kvStart = t * kvRowStride + kvRowStride - rowWidth;
    rmsNormRow(kv, kvStart, latentDim, gamma, attrs.eps, row, 0);
    ropeRow(kv, kvStart + latentDim, ropeDim, freqsCis, freqsRow, attrs.interleaved, row, latentDim);
    writeCacheRow(cache, slot, row, attrs.cacheDtype, fp8);
  }
  return backend.makeTensorInfo(layout.outputShape, 'float32', qOut);
}

export const fusedRopeCpuConfig: KernelConfig = {
  kernelName: FUSED_ROPE,
  backendName: 'cpu',
  kernelFunc: fusedRopeCpu as unknown as KernelFunc,
};
