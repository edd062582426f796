import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {MLA_PACK_HALF, MLA_UNPACK_HALF, MLAHalfAttrs} from '../kernel_names.js';
import {packHalf, unpackHalf} from '../../precision/half.js';
import {valuesOf} from './cpu_tensors.js';

type HalfArgs = {inputs: {x: TensorInfo}, backend: MathBackendCPU, attrs: MLAHalfAttrs & NamedAttrMap};

/** The readable references of MLAPackHalf and MLAUnpackHalf (contracts in ../kernel_names.ts). */
export function packHalfCpu({inputs: {x}, backend, attrs}: HalfArgs): TensorInfo {
  const last = x.shape[x.shape.length - 1];
  const words = packHalf(valuesOf(backend, x), attrs.dtype);
  return backend.makeTensorInfo([...x.shape.slice(0, -1), last / 2], 'int32', words);
}

export function unpackHalfCpu({inputs: {x}, backend, attrs}: HalfArgs): TensorInfo {
  const words = valuesOf(backend, x);
  const last = x.shape[x.shape.length - 1];
  const values = unpackHalf(words, attrs.dtype, words.length * 2);
  return backend.makeTensorInfo([...x.shape.slice(0, -1), last * 2], 'float32', values);
}

export const packHalfCpuConfig: KernelConfig = {
  kernelName: MLA_PACK_HALF,
  backendName: 'cpu',
  kernelFunc: packHalfCpu as unknown as KernelFunc,
};

export const unpackHalfCpuConfig: KernelConfig = {
  kernelName: MLA_UNPACK_HALF,
  backendName: 'cpu',
  kernelFunc: unpackHalfCpu as unknown as KernelFunc,
};
