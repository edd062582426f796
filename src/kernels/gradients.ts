import * as tf from '@tensorflow/tfjs-core';
import {mlaPrefillCompositeGrad} from '../ops/differentiable.js';
import {LINEAR, MLA_PREFILL, MLAPrefillAttrs} from './kernel_names.js';

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

/**
 * MLALinear has no gradient: the layer's float32 training path uses tf.matMul. Reaching it
 * means gradients through a 16-bit layer (whose products must read packed weights): an Error
 * that says so, instead of tfjs's "gradient function not found".
 */
export const mlaLinearGradConfig: tf.GradConfig = {
  kernelName: LINEAR,
  gradFunc: () => {
    throw new Error('MLALinear has no gradient: LatentAttentionWithRope layers with 16-bit weights ' +
                    "(dtype 'bfloat16' or 'float16') are inference-only; train a float32 layer " +
                    '(its no-cache apply path is differentiable) and load its weights into the 16-bit one');
  },
};
