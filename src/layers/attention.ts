/**
 * The compute graphs of the layer, as functions of the sizes, the weights and the step:
 * - `cachedStep`: one step over a ragged batch with the paged latent cache — the fused
 *   projection, FusedRope's cache write and query, then the absorbed decode (MLADecode) or the
 *   decompressed prefill (MLAPrefill chunk by chunk), then o_proj;
 * - `attendWithoutCache`: causal attention over [batch, seq, hidden] from differentiable pieces.
 * The layer class (latent_attention_with_rope.ts) validates before calling these.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {StepPlan} from '../cache/step_plan.js';
import {applyRope, rmsNorm} from '../ops/differentiable.js';
import type {CacheDtype, WeightDtype} from '../kernels/kernel_names.js';
import {fusedRope, mergeAttentionPartials, mlaDecode, mlaGatherRows, mlaLinear, MLALinearOptions, mlaPrefill} from '../ops/mla_ops.js';
import type {RotaryEmbedding} from '../rope/rotary_embedding.js';
import type {MLADims} from './config.js';
import {linearProduct, useLinearKernel} from './linear_policy.js';
import {planPrefillChunks, PrefillChunk, prefillChunks} from './prefill_metadata.js';
import type {AbsorbedWeights, HFWeightName} from './weights.js';

/** What the compute graphs read of a layer. */
export interface AttentionParts {
  dims: MLADims;
  rope: RotaryEmbedding;
  /** λ, the softmax scale. */
  scale: number;
  rmsNormEps: number;
  bufferSize: number;
  /** Weight `name` as stored: float32 [out, in], or 16-bit words [out, in / 2] (weightDtype). */
  weight(name: HFWeightName): tf.Tensor;
  weightDtype(name: HFWeightName): WeightDtype;
  absorbed(): AbsorbedWeights;
}

/**
 * x · Wᵀ for the weight `name` ([out, in]): MLALinear when `viaLinear` or the weight is 16-bit
 * (tf.matMul cannot read packed words), else tf.matMul. `options` go to MLALinear.
 */
function project(parts: AttentionParts, x: tf.Tensor2D, name: HFWeightName, viaLinear: boolean,
                 options: MLALinearOptions = {}): tf.Tensor2D {
  return linearProduct(x, parts.weight(name) as tf.Tensor2D, viaLinear, {...options, weightDtype: parts.weightDtype(name)});
}

/** One chunk of the prefill path with its device tensors. */
interface ChunkTensors {
  /** Flat cache rows to gather [rows]. */
  slots: tf.Tensor1D;
  chunkInfo: tf.Tensor2D;
}

/**
 * One cached step: x [T, hidden] → [T, hidden]; the new tokens' latent rows are written into
 * `cache` (this layer's storage) in place. `plan` is the step's shared plan; `chunks` the
 * prefill chunks (null: the absorbed decode path).
 *
 * Dispatches on webgpu with MLALinear (decode steps, software adapters): the q | kv projection
 * (1; q-LoRA: 2), FusedRope (2: cache write, query), MLADecode (1, or 2 with a split context),
 * W_UV (1), o_proj (1) — no split, concat or transpose between them.
 */
export function cachedStep(parts: AttentionParts, x: tf.Tensor2D, cache: tf.Tensor3D,
                           cacheDtype: CacheDtype, plan: StepPlan, chunks: ChunkTensors[]|null,
                           residual: tf.Tensor2D|null = null): tf.Tensor2D {
  const d = parts.dims;
  const numTokens = x.shape[0];
  const viaLinear = useLinearKernel(numTokens);
  const tokenInfo = plan.tokenInfoTensor2d();
  const {q, kv} = projectForCache(parts, x, viaLinear);
  const ropeAttrs = {eps: parts.rmsNormEps, interleaved: parts.rope.interleaved,
                     numHeads: d.numHeads, qkNopeHeadDim: d.qkNopeHeadDim, cacheDtype};
  const gamma = parts.weight('kv_a_layernorm.weight') as tf.Tensor1D;
  let attention: tf.Tensor2D;
  if (chunks === null) {
    const {wUkT, wUvT} = parts.absorbed();
    const query = fusedRope(q, kv, gamma, parts.rope.freqsCis, tokenInfo, cache,
                            {...ropeAttrs, weightDtype: parts.weightDtype('kv_b_proj.weight')}, wUkT);
    const outLatent = mlaDecode(query, cache, plan.lookupTensor2d(), tokenInfo,
                                {scale: parts.scale, kvLoraRank: d.kvLoraRank,
                                 maxContextLength: plan.maxContextLength, cacheDtype});
    const out = mlaLinear(outLatent, wUvT, {tokenMajor: true, weightDtype: parts.weightDtype('kv_b_proj.weight')});  // [T, H, V]
    attention = tf.reshape(out, [numTokens, d.numHeads * d.vHeadDim]);
  } else {
    const qRoped = fusedRope(q, kv, gamma, parts.rope.freqsCis, tokenInfo, cache, ropeAttrs);
    attention = decompressedAttention(parts, qRoped, cache, cacheDtype, plan.lookupTensor2d(), tokenInfo,
                                      chunks, viaLinear);
  }
  // The residual stream, when given, is added by o_proj's MLALinear (or after tf.matMul).
  return project(parts, attention, 'o_proj.weight', viaLinear, residual === null ? {} : {residual});
}

/**
 * The projections of a cached step: q (2-D, heads side by side) and the rows whose last L + R
 * columns are c_kv | k_pe. With MLALinear, one product over [q_proj; kv_a_proj_with_mqa]
 * (MAX's wqkv) gives both; with q-LoRA, q_b_proj then reads the q_a part of it with the
 * RMSNorm in the same kernel.
 */
function projectForCache(parts: AttentionParts, x: tf.Tensor2D, viaLinear: boolean):
    {q: tf.Tensor2D, kv: tf.Tensor2D} {
  const input = tf.cast(x, 'float32') as tf.Tensor2D;
  const kvName: HFWeightName = 'kv_a_proj_with_mqa.weight';
  const qName: HFWeightName = parts.dims.qLoraRank === null ? 'q_proj.weight' : 'q_a_proj.weight';
  const linearPath = viaLinear || parts.weightDtype(qName) !== 'float32';
  // One product over [q (or q_a); kv_a] when MLALinear runs it.
  const first = linearPath ?
      project(parts, input, qName, true, {w2: parts.weight(kvName) as tf.Tensor2D}) :
      project(parts, input, qName, false);
  const kv = linearPath ? first : project(parts, input, kvName, false);
  if (parts.dims.qLoraRank === null) return {q: first, kv};
  const qNorm = parts.weight('q_a_layernorm.weight') as tf.Tensor1D;
  if (linearPath) {
    return {q: project(parts, first, 'q_b_proj.weight', true,
                       {gamma: qNorm, normEps: parts.rmsNormEps, readFirstColumns: true}), kv};
  }
  const normed = rmsNorm(first, qNorm, parts.rmsNormEps) as tf.Tensor2D;
  return {q: project(parts, normed, 'q_b_proj.weight', false), kv};
}


/**
 * The prefill path: per chunk of at most bufferSize context rows, gather the latent rows,
 * decompress them with kv_b_proj into K_nope | V, run MLAPrefill, and merge the chunks'
 * partial softmax results by log-sum-exp. Differentiable when `viaLinear` is false
 * (MLAPrefill has a gradient): the no-cache path uses it with a dense `cache`.
 */
function decompressedAttention(parts: AttentionParts, qRoped: tf.Tensor3D, cache: tf.Tensor3D,
                               cacheDtype: CacheDtype, lookup: tf.Tensor2D, tokenInfo: tf.Tensor2D,
                               chunks: ChunkTensors[], viaLinear: boolean): tf.Tensor2D {
  const d = parts.dims;
  const [numTokens, numHeads] = qRoped.shape;
  const rowWidth = d.kvLoraRank + d.qkRopeHeadDim;
  const cacheRows = cacheDtype === 'float32' ? tf.reshape(cache, [-1, rowWidth]) : null;
  let merged: tf.Tensor3D|null = null;
  for (const chunk of chunks) {
    // Each chunk is freed before the next, so memory stays bounded by bufferSize rows.
    const part = tf.tidy(() => {
      const numRows = chunk.slots.shape[0];
      let decompressed: tf.Tensor2D;
      if (cacheRows === null) {
        // A 16-bit cache: its latent rows widened by one gather (float32, bufferSize rows at most).
        const latent = mlaGatherRows(cache, chunk.slots, {cacheDtype, columns: d.kvLoraRank,
                                                          kvLoraRank: d.kvLoraRank, ropeDim: d.qkRopeHeadDim});
        decompressed = project(parts, latent, 'kv_b_proj.weight', viaLinear);
      } else {
        const rows = tf.gather(cacheRows, chunk.slots) as tf.Tensor2D;
        // MLALinear reads the first L columns of each gathered row itself.
        decompressed = viaLinear || parts.weightDtype('kv_b_proj.weight') !== 'float32' ?
            project(parts, rows, 'kv_b_proj.weight', true, {readFirstColumns: true}) :
            project(parts, tf.slice(rows, [0, 0], [numRows, d.kvLoraRank]) as tf.Tensor2D, 'kv_b_proj.weight', false);
      }
      const kvBuffer = tf.reshape(decompressed, [numRows, numHeads, d.qkNopeHeadDim + d.vHeadDim]) as tf.Tensor3D;
      return mlaPrefill(qRoped, kvBuffer, cache, lookup, tokenInfo, chunk.chunkInfo,
                        {scale: parts.scale, qkNopeHeadDim: d.qkNopeHeadDim, cacheDtype, kvLoraRank: d.kvLoraRank});
    });
    if (merged === null) {
      merged = part;
    } else {
      const next: tf.Tensor3D = mergeAttentionPartials(merged, part);
      merged.dispose();
      part.dispose();
      merged = next;
    }
  }
  if (merged === null) throw new Error('forward: the prefill plan holds no context row');
  const out = tf.slice(merged, [0, 0, 0], [numTokens, numHeads, d.vHeadDim]);
  return tf.reshape(out, [numTokens, numHeads * d.vHeadDim]);
}

/**
 * Causal attention over x [batch, seq, hidden] (or [seq, hidden]) with no cache, from
 * differentiable pieces (tfjs ops and MLAPrefill, which has a gradient), so tf.grads and
 * model.fit work through it: the latent rows [RMSNorm(c_kv) | rope(k_pe)] of each sequence
 * form a dense cache [batch, seq, L + R], one page per sequence.
 */
export function attendWithoutCache(parts: AttentionParts, x: tf.Tensor): tf.Tensor {
  const d = parts.dims;
  const [batch, seqLen]: number[] = x.rank === 3 ? [x.shape[0], x.shape[1] as number] : [1, x.shape[0]];
  if (batch * seqLen === 0) return tf.zeros(x.shape);
  const numTokens = batch * seqLen;
  const slotOf = (b: number, k: number) => b * seqLen + k;
  const tokenInfo = new Int32Array(numTokens * 3);
  for (let b = 0; b < batch; b++) {
    for (let k = 0; k < seqLen; k++) tokenInfo.set([b, k, slotOf(b, k)], slotOf(b, k) * 3);
  }
  const contexts = new Array<number>(batch).fill(seqLen);
  const plannedChunks: PrefillChunk[] =
      prefillChunks(planPrefillChunks(contexts, seqLen, parts.bufferSize), contexts, slotOf);
  // tf.matMul keeps float32 layers differentiable; 16-bit weights go through MLALinear
  // (inference-only: its gradient is an Error saying so).
  const matMulT = (a: tf.Tensor, name: HFWeightName) => project(parts, a as tf.Tensor2D, name, false);
  return tf.tidy(() => {
    const flat = tf.reshape(tf.cast(x, 'float32'), [numTokens, d.hiddenSize]) as tf.Tensor2D;
    const positions = tf.tensor1d(Array.from({length: numTokens}, (_, t) => t % seqLen), 'int32');
    const q2d = d.qLoraRank === null ? matMulT(flat, 'q_proj.weight') :
        matMulT(rmsNorm(matMulT(flat, 'q_a_proj.weight'), parts.weight('q_a_layernorm.weight'),
                        parts.rmsNormEps), 'q_b_proj.weight');
    const q = tf.reshape(q2d, [numTokens, d.numHeads, d.qkNopeHeadDim + d.qkRopeHeadDim]);
    const [qNope, qRope] = tf.split(q, [d.qkNopeHeadDim, d.qkRopeHeadDim], 2);
    const qRoped = tf.concat(
        [qNope, applyRope(qRope, parts.rope.freqsCis, positions, parts.rope.interleaved)], 2) as tf.Tensor3D;
    const kv = matMulT(flat, 'kv_a_proj_with_mqa.weight');
    const [latent, kPe] = tf.split(kv, [d.kvLoraRank, d.qkRopeHeadDim], 1);
    const rows = tf.concat([
      rmsNorm(latent, parts.weight('kv_a_layernorm.weight'), parts.rmsNormEps),
      applyRope(kPe, parts.rope.freqsCis, positions, parts.rope.interleaved),
    ], 1);
    const denseCache = tf.reshape(rows, [batch, seqLen, d.kvLoraRank + d.qkRopeHeadDim]) as tf.Tensor3D;
    const lookup = tf.tensor2d(Array.from({length: batch}, (_, b) => b), [batch, 1], 'int32');
    const chunks = plannedChunks.map((chunk) => ({
      slots: tf.tensor1d(chunk.slots, 'int32'),
      chunkInfo: tf.tensor2d(chunk.chunkInfo, [batch, 3], 'int32'),
    }));
    const attention = decompressedAttention(parts, qRoped, denseCache, 'float32', lookup,
                                            tf.tensor2d(tokenInfo, [numTokens, 3], 'int32'), chunks, false);
    const y = matMulT(attention, 'o_proj.weight');
    return tf.reshape(y, x.shape);
  });
}
