import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import type {CacheDtype} from '../kernel_names.js';
import {packHalf, unpackHalf} from '../../precision/half.js';
import {decodeFp8Row, encodeFp8Row, Fp8RowLayout} from '../../precision/fp8.js';

/** The backing array of a cpu tensor: the live storage, so writes to it are in place. */
export function valuesOf(backend: MathBackendCPU, tensor: TensorInfo): Float32Array|Int32Array {
  const values = backend.data.get(tensor.dataId).values;
  if (!(values instanceof Float32Array) && !(values instanceof Int32Array)) {
    throw new Error(`tfjs-mla cpu kernel: expected float32 or int32 data, got ${tensor.dtype}`);
  }
  return values;
}

/**
 * Row `slot` of a cache's storage as float32 values: a view of float32 storage, or the packed
 * 16-bit values widened (exactly).
 */
export function cacheRow(storage: Float32Array|Int32Array, slot: number, rowWidth: number,
                         cacheDtype: CacheDtype|undefined, fp8: Fp8RowLayout|null = null): Float32Array {
  if (cacheDtype === 'float8_e4m3fn') {
    if (fp8 === null) throw new Error('tfjs-mla cpu kernel: a float8_e4m3fn cache needs its row layout');
    return decodeFp8Row(storage, slot * fp8.rowWords, fp8);
  }
  if (cacheDtype === 'bfloat16' || cacheDtype === 'float16') {
    return unpackHalf(storage, cacheDtype, rowWidth, slot * rowWidth);
  }
  return (storage as Float32Array).subarray(slot * rowWidth, (slot + 1) * rowWidth);
}

/** Writes float32 `row` into row `slot` of a cache's storage, rounded for 16-bit storage. */
export function writeCacheRow(storage: Float32Array|Int32Array, slot: number, row: Float32Array,
                              cacheDtype: CacheDtype|undefined, fp8: Fp8RowLayout|null = null): void {
  if (cacheDtype === 'float8_e4m3fn') {
    if (fp8 === null) throw new Error('tfjs-mla cpu kernel: a float8_e4m3fn cache needs its row layout');
    encodeFp8Row(row, fp8, storage as Int32Array, slot * fp8.rowWords);
  } else if (cacheDtype === 'bfloat16' || cacheDtype === 'float16') {
    packHalf(row, cacheDtype, storage as Int32Array, slot * row.length / 2);
  } else {
    (storage as Float32Array).set(row, slot * row.length);
  }
}
