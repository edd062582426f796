import {LatentAttentionWithRope, LatentAttentionWithRopeArgs} from './latent_attention_with_rope.js';

/**
 * The tf.layers-style factory of {@link LatentAttentionWithRope}, as `tf.layers.dense(args)`
 * is of `Dense`: `latentAttentionWithRope(args)` is `new LatentAttentionWithRope(args)`.
 *
 * ```ts
 * const attn = latentAttentionWithRope({rope, numAttentionHeads: 16, numKeyValueHeads: 16,
 *                                       hiddenSize: 2048, kvParams});
 * const output = attn.apply(input) as tf.SymbolicTensor;
 * ```
 */
export function latentAttentionWithRope(args: LatentAttentionWithRopeArgs): LatentAttentionWithRope {
  return new LatentAttentionWithRope(args);
}
