import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {MLA_PACK_HALF, MLA_UNPACK_HALF, MLAHalfAttrs} from '../kernel_names.js';
import {HalfConvertProgram} from './half_convert_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

type HalfArgs = {inputs: {x: TensorInfo}, backend: WebGPUBackend, attrs: MLAHalfAttrs & NamedAttrMap};

/** MLAPackHalf and MLAUnpackHalf on webgpu (contracts in ../kernel_names.ts): one dispatch each. */
function convert(args: HalfArgs, pack: boolean): TensorInfo {
  const {inputs: {x}, backend, attrs} = args;
  const last = x.shape[x.shape.length - 1];
  const outputShape = [...x.shape.slice(0, -1), pack ? last / 2 : last * 2];
  const numWords = outputShape.reduce((a, b) => a * b, 1) / (pack ? 1 : 2);
  if (numWords === 0) {
    return backend.makeTensorInfo(outputShape, pack ? 'int32' : 'float32',
                                  pack ? new Int32Array(0) : new Float32Array(0));
  }
  const program = new HalfConvertProgram({dtype: attrs.dtype, pack}, outputShape, numWords);
  return backend.runWebGPUProgram(program, [x], pack ? 'int32' : 'float32',
                                  [{type: 'int32', data: [numWords]}]);
}

export const packHalfWebGPUConfig: KernelConfig = {
  kernelName: MLA_PACK_HALF,
  backendName: 'webgpu',
  kernelFunc: ((args: HalfArgs) => convert(args, true)) as unknown as KernelFunc,
};

export const unpackHalfWebGPUConfig: KernelConfig = {
  kernelName: MLA_UNPACK_HALF,
  backendName: 'webgpu',
  kernelFunc: ((args: HalfArgs) => convert(args, false)) as unknown as KernelFunc,
};
