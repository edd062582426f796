import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {FUSED_ROPE, FusedRopeAttrs} from '../kernel_names.js';
import {cacheFp8Layout, fusedRopeLayout} from '../layouts.js';
import {RopeCacheWriteProgram, RopeQProgram} from './fused_rope_webgpu.js';
import {defaultColsPerInvocation, LinearProgram, linearVectorWidth, MAX_ROWS_PER_INVOCATION} from './linear_webgpu.js';
import {invalidateCpuCopy, WebGPUBackend} from './webgpu_util.js';

/**
 * The webgpu FusedRope (contract in ../kernel_names.ts), two dispatches: one program writes
 * each token's cache row `[RMSNorm(c_kv) | rope(k_pe)]` straight into the cache's buffer (the
 * cache is the program's output, so nothing is copied); a second one makes the query — q
 * roped ([T, H, N+R]), or with W_UKᵀ the absorbed query MLADecode reads ([T, H, L+R]: the
 * per-head product by MLALinear's program, whose rope tail writes the roped q_rope beside it).
 * Host-side it reads shapes and attrs only, never GPU data.
 */
export function fusedRopeWebGPU(args: {
  inputs: {q: TensorInfo, kv: TensorInfo, gamma: TensorInfo, freqsCis: TensorInfo,
           tokenInfo: TensorInfo, cache: TensorInfo, wUkT?: TensorInfo},
  backend: WebGPUBackend,
  attrs: FusedRopeAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const {q, kv, gamma, freqsCis, tokenInfo, cache, wUkT} = inputs;
  const layout = fusedRopeLayout(q.shape, gamma.shape, freqsCis.shape, wUkT?.shape ?? null, attrs);
  const rope = {interleaved: Boolean(attrs.interleaved)};  // as the cpu kernel reads it
  const {numTokens, numHeads, nopeDim, ropeDim, latentDim, qRowStride} = layout;

  if (numTokens > 0) {
    const cacheDtype = attrs.cacheDtype ?? 'float32';
    const cacheProgram = new RopeCacheWriteProgram(
        {...rope, cacheDtype, fp8: cacheFp8Layout(cacheDtype, latentDim, ropeDim)}, cache.shape, numTokens);
    backend.runWebGPUProgram(cacheProgram, [kv, gamma, freqsCis, tokenInfo], cache.dtype,
                             [{type: 'float32', data: [attrs.eps]}], cache);
    invalidateCpuCopy(backend, cache);
  }
  if (wUkT === undefined) {
    return backend.runWebGPUProgram(new RopeQProgram(rope, layout.outputShape),
                                    [q, freqsCis, tokenInfo], 'float32',
                                    [{type: 'int32', data: [qRowStride]}]);
  }
  if (numTokens === 0 || numHeads === 0) {
    return backend.makeTensorInfo(layout.outputShape, 'float32', new Float32Array(0));
  }
  const headWidth = nopeDim + ropeDim;
  const queryWidth = latentDim + ropeDim;
  const geometry = {
    numEntries: numHeads, m: numTokens, k: nopeDim, n: latentDim, splitCol: latentDim,
    xEntryStride: headWidth, xRowStride: qRowStride,
    outEntryStride: queryWidth, outRowStride: numHeads * queryWidth, eps: 0,
    tail: {ropeDim, srcRowStride: qRowStride, srcHeadStride: headWidth, srcOffset: nopeDim,
           dstOffset: latentDim},
  };
  const program = new LinearProgram({
    rowsPerInvocation: Math.min(numTokens, MAX_ROWS_PER_INVOCATION),
    colsPerInvocation: defaultColsPerInvocation(numTokens, null),
    workgroupSize: 16,
    vectorWidth: linearVectorWidth(geometry),
    secondWeight: false,
    rmsNorm: false,
    residual: false,
    ropeTail: rope,
    weightDtype: attrs.weightDtype ?? 'float32',
  }, geometry, layout.outputShape);
  return backend.runWebGPUProgram(program, [q, wUkT, freqsCis, tokenInfo], 'float32',
                                  program.uniformValues());
}

export const fusedRopeWebGPUConfig: KernelConfig = {
  kernelName: FUSED_ROPE,
  backendName: 'webgpu',
  kernelFunc: fusedRopeWebGPU as unknown as KernelFunc,
};
