/**
 * The layer's weights by their HF names: shapes, the head blocks a tensor-parallel shard
 * takes, and the absorbed W_UK / W_UV the decode path reads (derived from kv_b_proj once and
 * kept until it changes).
 */
import * as tf from '@tensorflow/tfjs-core';
import type {MLADims} from './config.js';
import type {WeightDtype} from '../kernels/kernel_names.js';
import {mlaPackHalf, mlaUnpackHalf} from '../ops/mla_ops.js';
import {PackedHalfTensor} from '../precision/packed.js';

export const HF_WEIGHT_NAMES = [
  'q_proj.weight', 'q_a_proj.weight', 'q_a_layernorm.weight', 'q_b_proj.weight',
  'kv_a_proj_with_mqa.weight', 'kv_a_layernorm.weight', 'kv_b_proj.weight', 'o_proj.weight',
] as const;
export type HFWeightName = typeof HF_WEIGHT_NAMES[number];

export function showShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * A weight (float32, or a checkpoint's PackedHalfTensor) in storage `dtype`: float32, or int32
 * words of 16-bit values rounded to nearest-even. A new tensor; words of the same 16-bit dtype
 * are shared, not copied.
 */
export function storedWeight(weight: tf.Tensor|PackedHalfTensor, dtype: WeightDtype): tf.Tensor {
  return tf.tidy(() => {
    if (weight instanceof PackedHalfTensor && weight.dtype === dtype) return tf.clone(weight.words);
    const float = weight instanceof PackedHalfTensor ? mlaUnpackHalf(weight.words, weight.dtype) :
                                                       tf.cast(weight, 'float32');
    return dtype === 'float32' ? float : mlaPackHalf(float, dtype);
  });
}

/** The HF weights of a configuration and their [out, in] shapes. */
export function expectedWeightShapes(d: MLADims): Map<HFWeightName, number[]> {
  const H = d.numHeads;
  const qHeadDim = d.qkNopeHeadDim + d.qkRopeHeadDim;
  const shapes = new Map<HFWeightName, number[]>();
  if (d.qLoraRank === null) {
    shapes.set('q_proj.weight', [H * qHeadDim, d.hiddenSize]);
  } else {
    shapes.set('q_a_proj.weight', [d.qLoraRank, d.hiddenSize]);
    shapes.set('q_a_layernorm.weight', [d.qLoraRank]);
    shapes.set('q_b_proj.weight', [H * qHeadDim, d.qLoraRank]);
  }
  shapes.set('kv_a_proj_with_mqa.weight', [d.kvLoraRank + d.qkRopeHeadDim, d.hiddenSize]);
  shapes.set('kv_a_layernorm.weight', [d.kvLoraRank]);
  shapes.set('kv_b_proj.weight', [H * (d.qkNopeHeadDim + d.vHeadDim), d.kvLoraRank]);
  shapes.set('o_proj.weight', [d.hiddenSize, H * d.vHeadDim]);
  return shapes;
}

/** kv_b_proj rows [start, start + size) of every head, as [H, size, L]. A new tensor. */
export function kvBHeads(d: MLADims, kvB: tf.Tensor, start: number, size: number): tf.Tensor3D {
  return tf.tidy(() => {
    const perHead = tf.reshape(kvB, [d.numHeads, d.qkNopeHeadDim + d.vHeadDim, d.kvLoraRank]);
    return tf.slice(perHead, [0, start, 0], [d.numHeads, size, d.kvLoraRank]) as tf.Tensor3D;
  });
}

/** The part of weight `name` that belongs to heads [firstHead, firstHead + numHeads). A new tensor. */
export function headBlock(d: MLADims, name: HFWeightName, weight: tf.Tensor, firstHead: number,
                          numHeads: number): tf.Tensor {
  const rowsPerHead: Partial<Record<HFWeightName, number>> = {
    'q_proj.weight': d.qkNopeHeadDim + d.qkRopeHeadDim,
    'q_b_proj.weight': d.qkNopeHeadDim + d.qkRopeHeadDim,
    'kv_b_proj.weight': d.qkNopeHeadDim + d.vHeadDim,
  };
  const rows = rowsPerHead[name];
  if (rows !== undefined) {
    return tf.slice(weight, [firstHead * rows, 0], [numHeads * rows, weight.shape[1]!]);
  }
  if (name === 'o_proj.weight') {
    return tf.slice(weight, [0, firstHead * d.vHeadDim], [weight.shape[0], numHeads * d.vHeadDim]);
  }
  return tf.clone(weight);  // replicated: q_a_proj, norms, kv_a_proj_with_mqa
}

/** W_UK and W_UV in the per-head [out, in] layout the decode kernels read. */
export interface AbsorbedWeights {
  /** W_UK as [H, L, N]: FusedRope's wUkT (q_lat[h] = wUkT[h] · q_nope[h]); 16-bit: [H, L, N / 2] words. */
  wUkT: tf.Tensor3D;
  /** W_UV as [H, V, L]: MLALinear's per-head weight (out[h] = wUvT[h] · o_lat[h]); 16-bit: [H, V, L / 2]. */
  wUvT: tf.Tensor3D;
}

/** Keeps the absorbed weights of a kv_b_proj until its data changes (a Variable's dataId changes on assign). */
export class AbsorbedWeightCache {
  private source: object|null = null;
  private weights: AbsorbedWeights|null = null;

  /**
   * `kvB` as stored: float32 [H·(N+V), L], or 16-bit words [H·(N+V), L / 2] (`dtype`), which
   * are widened to a transient float32 copy of this one weight, sliced per head, W_UK
   * transposed, and packed again. (tfjs's own webgpu kernels must not touch packed words: its
   * slice and fill go through float32 and round words past 2^24.)
   */
  get(d: MLADims, kvB: tf.Tensor, dtype: WeightDtype = 'float32'): AbsorbedWeights {
    if (this.weights === null || this.source !== kvB.dataId) {
      this.clear();
      this.weights = tf.tidy(() => {
        const float = dtype === 'float32' ? kvB : mlaUnpackHalf(kvB, dtype);
        const wUkT = tf.transpose(kvBHeads(d, float, 0, d.qkNopeHeadDim), [0, 2, 1]) as tf.Tensor3D;
        const wUvT = kvBHeads(d, float, d.qkNopeHeadDim, d.vHeadDim);
        if (dtype === 'float32') return {wUkT: tf.keep(wUkT), wUvT: tf.keep(wUvT)};
        return {wUkT: tf.keep(mlaPackHalf(wUkT, dtype) as tf.Tensor3D),
                wUvT: tf.keep(mlaPackHalf(wUvT, dtype) as tf.Tensor3D)};
      });
      this.source = kvB.dataId;
    }
    return this.weights;
  }

  clear(): void {
    if (this.weights !== null) {
      this.weights.wUkT.dispose();
      this.weights.wUvT.dispose();
      this.weights = null;
      this.source = null;
    }
  }
}

/** The storage dtype of weight `name`: projections in dtype (o_proj in oProjDtype); norms float32. */
export function storageDtypeOf(name: HFWeightName, dtypes: {dtype: WeightDtype, oProjDtype: WeightDtype}): WeightDtype {
  if (name.endsWith('layernorm.weight')) return 'float32';
  return name === 'o_proj.weight' ? dtypes.oProjDtype : dtypes.dtype;
}

/** The stored shape of a weight: [out, in], or [out, in / 2] int32 words for 16-bit storage. */
export function storedShape(shape: readonly number[], dtype: WeightDtype): number[] {
  return dtype === 'float32' ? [...shape] : [...shape.slice(0, -1), shape[shape.length - 1] / 2];
}
