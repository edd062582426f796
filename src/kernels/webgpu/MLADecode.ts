import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {MLA_DECODE, MLADecodeAttrs} from '../kernel_names.js';
import {MLA_DECODE_REDUCE_PARAMS, MLADecodeReduceProgram} from './mla_decode_reduce_webgpu.js';
import {mlaDecodeSplitParams, MLADecodeSplitProgram, planMLADecode} from './mla_decode_webgpu.js';
import {deviceLimits, isSoftwareAdapter, softwareAdapterThreads, WebGPUBackend} from './webgpu_util.js';

/**
 * The webgpu MLADecode (contract in ../kernel_names.ts): flash decoding over the paged cache.
 * Pass 1 (MLADecodeSplitProgram) splits each token's context into `numSplits` chunks, chosen
 * from `maxContextLength` so a single long sequence still fills many workgroups; pass 2
 * (MLADecodeReduceProgram) merges the splits by log-sum-exp. With one split, pass 1 writes
 * the result directly. Host-side it reads shapes and attrs only, never GPU data.
 */
export function mlaDecodeWebGPU(args: {
  inputs: {q: TensorInfo, cache: TensorInfo, lookup: TensorInfo, tokenInfo: TensorInfo},
  backend: WebGPUBackend,
  attrs: MLADecodeAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend, attrs} = args;
  const {q, cache, lookup, tokenInfo} = inputs;
  const [numTokens, numHeads, rowWidth] = q.shape;
  const latentDim = attrs.kvLoraRank;
  const outputShape = [numTokens, numHeads, latentDim];
  if (numTokens === 0 || numHeads === 0) {
    return backend.makeTensorInfo(outputShape, 'float32', new Float32Array(0));
  }

  const plan = planMLADecode(numTokens, numHeads, rowWidth, latentDim, attrs.maxContextLength,
                             deviceLimits(backend), isSoftwareAdapter(backend),
                             softwareAdapterThreads());
  const splitProgram =
      new MLADecodeSplitProgram(mlaDecodeSplitParams(plan, rowWidth, latentDim, attrs.cacheDtype ?? 'float32'),
                                q.shape, plan);
  const uniforms = [
    {type: 'float32' as const, data: [attrs.scale * Math.LOG2E]},
    {type: 'int32' as const, data: [plan.chunk]},
    {type: 'int32' as const, data: [plan.numSplits]},
    {type: 'int32' as const, data: [plan.numHeadBlocks]},
  ];
  const pass1 =
      backend.runWebGPUProgram(splitProgram, [q, cache, lookup, tokenInfo], 'float32', uniforms);
  if (plan.numSplits === 1) return pass1;

  const reduceProgram = new MLADecodeReduceProgram(MLA_DECODE_REDUCE_PARAMS, outputShape);
  const result = backend.runWebGPUProgram(reduceProgram, [pass1, tokenInfo], 'float32',
                                          [{type: 'int32', data: [plan.chunk]}]);
  backend.disposeData(pass1.dataId);
  return result;
}

export const mlaDecodeWebGPUConfig: KernelConfig = {
  kernelName: MLA_DECODE,
  backendName: 'webgpu',
  kernelFunc: mlaDecodeWebGPU as unknown as KernelFunc,
};
