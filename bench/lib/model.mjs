// Model sizes, random weights and inputs, the layer, and paged caches filled with a given
// dense context.
import * as tf from '@tensorflow/tfjs-core';
import {DeepseekYarnRotaryEmbedding, KVCacheParams, LatentAttentionWithRope, PagedKVCache, packHalf} from '../../dist/index.js';
import {encodeFp8Row} from '../../dist/precision/fp8.js';
import {V2_LITE as V2_LITE_SIZES} from '../../demos/common/helpers.mjs';
import {hashFillProgram, hashFillUniforms, run, scatterRowsInPlace} from './webgpu_programs.mjs';

/**
 * DeepSeek-V2-Lite attention (config.json of deepseek-ai/DeepSeek-V2-Lite): no q-LoRA, YaRN;
 * the sizes the demos use too (demos/common/helpers.mjs).
 */
export const V2_LITE = {
  name: 'DeepSeek-V2-Lite attention',
  ...V2_LITE_SIZES,
  qLoraRank: null,
  pageSize: 128,
};

/** A small configuration with the same structure, for checking the harness (--tiny). */
export const TINY = {
  name: 'tiny (harness check)',
  numHeads: 4,
  hiddenSize: 256,
  kvLoraRank: 64,
  qkNopeHeadDim: 32,
  qkRopeHeadDim: 16,
  vHeadDim: 32,
  ropeTheta: 10000,
  rmsNormEps: 1e-6,
  yarn: V2_LITE.yarn,
  qLoraRank: null,
  pageSize: 16,
};

export const rowWidth = (cfg) => cfg.kvLoraRank + cfg.qkRopeHeadDim;

/** Short names of the storage dtypes, for case ids (`decode-2048-b1-bf16`). */
export const DTYPE_SHORT = Object.freeze({float32: 'f32', bfloat16: 'bf16', float16: 'f16', float8_e4m3fn: 'fp8'});

/** Bytes of one stored weight value (16-bit dtypes are packed two per 32-bit word). */
export const BYTES_PER_VALUE = Object.freeze({float32: 4, bfloat16: 2, float16: 2});

/** Bytes per cache value: the row's stored bytes over its values (fp8: 656 / 576 at V2-Lite). */
export const cacheBytesPerValue = (kvParams) =>
  (kvParams.bytesPerToken ?? 4 * kvParams.rowWidth) / kvParams.rowWidth;

/**
 * Rows [n, D] of float32 values → the words a cache of `dtype` stores for them, [n, W]
 * (int32): 16-bit values rounded to nearest-even and packed two a word (packHalf), or fp8
 * rows in FlashMLA's layout (encodeFp8Row: e4m3 codes with a scale per 128 values, k_pe
 * bf16), both the package's own encoders.
 */
function encodeRows(values, D, dtype, kvParams) {
  if (dtype === 'bfloat16' || dtype === 'float16') return {words: packHalf(values, dtype), W: D / 2};
  if (dtype === 'float8_e4m3fn') {
    const layout = kvParams.fp8Layout;
    const W = kvParams.storedRowWidth;
    const n = values.length / D;
    const words = new Int32Array(n * W);
    for (let r = 0; r < n; r++) encodeFp8Row(values.subarray(r * D, (r + 1) * D), layout, words, r * W);
    return {words, W};
  }
  throw new Error(`fillPagedCache: no encoder here for a ${dtype} cache`);
}

/** A float32 tensor of `shape`, uniform with variance `scale²`, deterministic in `seed`. */
export function randomTensor(shape, seed, scale = 1) {
  if (tf.getBackend() === 'webgpu') {
    const t = run(hashFillProgram(shape), [], 'float32', hashFillUniforms(seed));
    if (scale === 1) return t;
    const scaled = tf.mul(t, scale);
    t.dispose();
    return scaled;
  }
  return tf.tidy(() => tf.mul(tf.randomUniform(shape, -Math.sqrt(3), Math.sqrt(3), 'float32', seed), scale));
}

/**
 * HF-named weights, [out, in]: N(0, 0.02²)-like projections, norm weights around 1. With
 * `cfg.qLoraRank`, q_a_proj / q_a_layernorm / q_b_proj instead of q_proj.
 */
export function makeWeights(cfg, seed = 1) {
  const {numHeads: H, hiddenSize: D, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = cfg;
  const norm = (n, s) => {
    const gamma = randomTensor([n], s, 0.1);
    const w = tf.add(gamma, 1);
    gamma.dispose();
    return w;
  };
  const q = cfg.qLoraRank ? {
    'q_a_proj.weight': randomTensor([cfg.qLoraRank, D], seed + 5, 0.02),
    'q_a_layernorm.weight': norm(cfg.qLoraRank, seed + 6),
    'q_b_proj.weight': randomTensor([H * (N + R), cfg.qLoraRank], seed, 0.02),
  } : {'q_proj.weight': randomTensor([H * (N + R), D], seed, 0.02)};
  return {
    ...q,
    'kv_a_proj_with_mqa.weight': randomTensor([L + R, D], seed + 1, 0.02),
    'kv_a_layernorm.weight': norm(L, seed + 4),
    'kv_b_proj.weight': randomTensor([H * (N + V), L], seed + 2, 0.02),
    'o_proj.weight': randomTensor([D, H * V], seed + 3, 0.02),
  };
}

export function makeRope(cfg, maxSeqLen) {
  return new DeepseekYarnRotaryEmbedding({
    dim: cfg.qkRopeHeadDim, nHeads: cfg.numHeads, theta: cfg.ropeTheta, maxSeqLen,
    scalingParams: cfg.yarn,
  });
}

/**
 * The cache's params; `dtype` how it stores its rows (float32, bfloat16, float16,
 * float8_e4m3fn: that layout needs the rope width).
 */
export function makeKvParams(cfg, numLayers = 1, dtype = 'float32') {
  return new KVCacheParams({headDim: rowWidth(cfg), pageSize: cfg.pageSize, numLayers,
                            ...(dtype === 'float32' ? {} : {dtype}),
                            ...(dtype === 'float8_e4m3fn' ? {qkRopeHeadDim: cfg.qkRopeHeadDim} : {})});
}

/**
 * The layer, loaded with `weights` (float32 tensors; the layer keeps its own copy, rounded to
 * its `dtype`, which also goes to normDtype and oProjDtype). The layer reads the cache dtype
 * from each step's collection, so one layer serves caches of every dtype.
 */
export function makeLayer(cfg, rope, kvParams, weights, name = 'bench_mla', dtype = 'float32') {
  const layer = new LatentAttentionWithRope({
    rope, numAttentionHeads: cfg.numHeads, numKeyValueHeads: cfg.numHeads,
    hiddenSize: cfg.hiddenSize, kvParams, qLoraRank: cfg.qLoraRank ?? null, kvLoraRank: cfg.kvLoraRank,
    qkNopeHeadDim: cfg.qkNopeHeadDim, qkRopeHeadDim: cfg.qkRopeHeadDim, vHeadDim: cfg.vHeadDim,
    rmsNormEps: cfg.rmsNormEps, name,
    ...(dtype === 'float32' ? {} : {dtype, normDtype: dtype, oProjDtype: dtype}),
  });
  try {
    layer.loadStateDict(weights);
  } catch (e) {
    layer.dispose();
    throw e;
  }
  return layer;
}

/**
 * Writes a dense context `dense` [B, S0, D] into the paged storage of `collection` for layer
 * `layerIdx` (rows of sequence b at its slots for tokens 0..S0−1), in place, on the active
 * backend. A 16-bit cache (collection.params.dtype bfloat16 / float16) gets the values rounded
 * to nearest-even and packed two per int32 word by the package's own packHalf.
 */
export async function fillPagedCache(collection, dense, layerIdx = 0) {
  const [B, S0, D] = dense.shape;
  const storage = collection.storage(layerIdx);
  const rows = storage.shape[0] * storage.shape[1];
  const index = new Int32Array(rows).fill(-1);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < S0; k++) index[collection.slotOf(b, k)] = b * S0 + k;
  }
  const dtype = collection.params?.dtype ?? 'float32';
  if (dtype !== 'float32') {
    const {words, W} = encodeRows(await dense.data(), D, dtype, collection.params);
    if (tf.getBackend() === 'webgpu') {
      const indexTensor = tf.tensor1d(index, 'int32');
      const flat = tf.tensor1d(words, 'int32');
      scatterRowsInPlace(storage, flat, indexTensor, W, 'int32');
      tf.dispose([indexTensor, flat]);
      return;
    }
    const values = tf.backend().data.get(storage.dataId).values;
    for (let r = 0; r < rows; r++) {
      if (index[r] >= 0) values.set(words.subarray(index[r] * W, (index[r] + 1) * W), r * W);
      else values.fill(0, r * W, (r + 1) * W);
    }
    return;
  }
  if (tf.getBackend() === 'webgpu') {
    const indexTensor = tf.tensor1d(index, 'int32');
    const flat = tf.reshape(dense, [B * S0 * D]);
    scatterRowsInPlace(storage, flat, indexTensor, D);
    tf.dispose([indexTensor, flat]);
    return;
  }
  // cpu: the kernels of this package write the backing array in place too.
  const values = tf.backend().data.get(storage.dataId).values;
  const source = await dense.data();
  for (let r = 0; r < rows; r++) {
    if (index[r] >= 0) values.set(source.subarray(index[r] * D, (index[r] + 1) * D), r * D);
    else values.fill(0, r * D, (r + 1) * D);
  }
}

/**
 * A paged cache with B sequences holding S0 tokens each, and the collection of a 1-token step
 * (fetched: its rows for the new token are reserved).
 */
export function decodeCache(kvParams, B, S0) {
  const pagesPerSeq = Math.ceil((S0 + 1) / kvParams.pageSize);
  const cache = new PagedKVCache(kvParams, {totalNumPages: B * pagesPerSeq});
  const ids = Array.from({length: B}, (_, b) => b);
  ids.forEach((id) => cache.claim(id));
  cache.fetch(ids, ids.map(() => S0));
  cache.step(ids, ids.map(() => S0));
  const collection = cache.fetch(ids, ids.map(() => 1));
  return {cache, collection, ids};
}

/** tokenInfo rows (b, p, slot) and the lookup table of a collection, as tensors. */
export function stepTensors(collection) {
  // The step's own plan (what every layer of the step reads): owned by the collection, freed
  // when its cache steps, rolls back or is disposed.
  const plan = collection.plan;
  return {tokenInfo: plan.tokenInfoTensor2d(), lookup: plan.lookupTensor2d()};
}
