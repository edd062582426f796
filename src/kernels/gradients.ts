import * as tf from '@tensorflow/tfjs-core';
import {mlaPrefillCompositeGrad} from '../ops/differentiable.js';
import {MLA_PREFILL, MLAPrefillAttrs} from './kernel_names.js';

/**
 * The gradient of MLAPrefill (the kernel of the layer's no-cache path), for every backend:
 * it recomputes the attention's probabilities with plain tfjs ops and runs the attention
 * backward (mlaPrefillCompositeGrad), so the kernels stay forward-only. Gradients reach q,
 * kvBuffer and the cache tensor's k_rope columns; the int32 metadata gets zeros.
 */
export const mlaPrefillGradConfig: tf.GradConfig = {
  kernelName: MLA_PREFILL,
  inputsToSave: ['q', 'kvBuffer', 'cache', 'lookup', 'tokenInfo', 'chunkInfo'],
  gradFunc: (dy: tf.Tensor|tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const [q, kvBuffer, cache, lookup, tokenInfo, chunkInfo] = saved;
    const {dq, dKvBuffer, dCache} = mlaPrefillCompositeGrad(
        dy as tf.Tensor3D, q as tf.Tensor3D, kvBuffer as tf.Tensor3D, cache as tf.Tensor3D,
        lookup as tf.Tensor2D, tokenInfo as tf.Tensor2D, chunkInfo as tf.Tensor2D,
        attrs as unknown as MLAPrefillAttrs);
    return {
      q: () => dq,
      kvBuffer: () => dKvBuffer,
      cache: () => dCache,
      lookup: () => tf.zerosLike(lookup),
      tokenInfo: () => tf.zerosLike(tokenInfo),
      chunkInfo: () => tf.zerosLike(chunkInfo),
    };
  },
};
