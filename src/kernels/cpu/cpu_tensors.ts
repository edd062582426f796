import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';

/** The backing array of a cpu tensor: the live storage, so writes to it are in place. */
export function valuesOf(backend: MathBackendCPU, tensor: TensorInfo): Float32Array|Int32Array {
  const values = backend.data.get(tensor.dataId).values;
  if (!(values instanceof Float32Array) && !(values instanceof Int32Array)) {
    throw new Error(`tfjs-mla cpu kernel: expected float32 or int32 data, got ${tensor.dtype}`);
  }
  return values;
}
