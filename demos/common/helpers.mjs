// What the Node demo (demos/node/demo.mjs, over dist/), the browser demo (demos/web/main.ts,
// bundled from src/) and the benchmark (bench/) share: the DeepSeek-V2-Lite attention sizes,
// the seeded generator of weights and inputs, building a layer + cache with host weights, one
// cached step, the compile-only warm-up, the cpu-reference comparison and the kernel list.
//
// The package comes in as an argument (`mla`: the module namespace of dist/index.js or of
// src/index.ts), so the page bundles one copy of it and Node loads the built one. Types for
// the page: helpers.d.mts.
import * as tf from '@tensorflow/tfjs-core';

/** DeepSeek-V2-Lite attention (config.json of deepseek-ai/DeepSeek-V2-Lite): no q-LoRA, YaRN. */
export const V2_LITE = Object.freeze({
  hiddenSize: 2048,
  numHeads: 16,
  kvLoraRank: 512,
  qkNopeHeadDim: 128,
  qkRopeHeadDim: 64,
  vHeadDim: 128,
  ropeTheta: 10000,
  rmsNormEps: 1e-6,
  yarn: Object.freeze({scalingFactor: 40, originalMaxPositionEmbeddings: 4096, betaFast: 32, betaSlow: 1,
                       mscale: 0.707, mscaleAllDim: 0.707}),
});

// ---- seeded numbers -------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n values, uniform with standard deviation `std` (half-width std·√3). */
export function uniform(random, n, std) {
  const out = new Float32Array(n);
  const a = std * Math.sqrt(3);
  for (let i = 0; i < n; i++) out[i] = (2 * random() - 1) * a;
  return out;
}

/**
 * Host-side weights {name: {shape, values}} for a layer's HF weight shapes (`[name, shape]`
 * pairs, e.g. `layer.expectedWeightShapes()`): uniform with standard deviation 1/√fan_in,
 * RMSNorm weights 1, from one generator seeded with `seed`, in the order given.
 */
export function randomWeights(shapes, seed) {
  const random = prng(seed);
  const weights = {};
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    weights[name] = {shape, values: name.endsWith('layernorm.weight') ?
      new Float32Array(n).fill(1) : uniform(random, n, 1 / Math.sqrt(shape[shape.length - 1]))};
  }
  return weights;
}

/** Every token's input row, per sequence: lengths[b] · hidden values, uniform with std 1. */
export function randomInputs(seed, lengths, hidden) {
  const random = prng(seed * 7919 + 17);
  return lengths.map((n) => uniform(random, n * hidden, 1));
}

/** Rows [from, to) of every sequence's input, concatenated. */
export function gatherInputs(inputs, ranges, hidden) {
  const total = ranges.reduce((s, [a, b]) => s + b - a, 0);
  const out = new Float32Array(total * hidden);
  let row = 0;
  ranges.forEach(([from, to], b) => {
    out.set(inputs[b].subarray(from * hidden, to * hidden), row * hidden);
    row += to - from;
  });
  return out;
}

// ---- the kernels a run needs ----------------------------------------------------------------

/**
 * The kernels a run uses: MLAPrefill only when the prefill (decompressing) path runs, i.e.
 * with graphMode 'prefill', or in 'auto' when a prompt has more than
 * MLA_DECODE_MAX_NEW_TOKENS tokens.
 */
export function requiredKernels(mla, prompts, graphMode = 'auto') {
  const prefillPath = graphMode === 'prefill' ||
                      (graphMode === 'auto' && Math.max(...prompts) > mla.MLA_DECODE_MAX_NEW_TOKENS);
  const kernels = prefillPath ? [mla.FUSED_ROPE, mla.MLA_PREFILL, mla.MLA_DECODE] : [mla.FUSED_ROPE, mla.MLA_DECODE];
  if (kernels.some((k) => typeof k !== 'string')) throw new Error('requiredKernels: the package lacks a kernel name export');
  return kernels;
}

/** The kernels of `kernels` that have no implementation registered for `backend`. */
export function missingKernels(kernels, backend = 'webgpu') {
  return kernels.filter((k) => tf.getKernel(k, backend) === undefined);
}

// ---- dtypes -------------------------------------------------------------------------------------

/** Storage dtypes of the layer's weights (`dtype`) and of the latent cache (`cacheDtype`). */
export const DTYPES = Object.freeze(['float32', 'bfloat16', 'float16']);

/**
 * Bytes of one value stored in `dtype` (16-bit values are packed two per 32-bit word; fp8: the
 * one-byte codes alone, without the cache's per-block scales).
 */
export const BYTES_PER_VALUE = Object.freeze({float32: 4, bfloat16: 2, float16: 2, float8_e4m3fn: 1});

const DTYPE_ALIASES = Object.freeze({f32: 'float32', fp32: 'float32', bf16: 'bfloat16', f16: 'float16',
                                     fp16: 'float16', half: 'float16', fp8: 'float8_e4m3fn',
                                     f8: 'float8_e4m3fn', e4m3: 'float8_e4m3fn'});

/**
 * The dtype a name means: a full name ('bfloat16') or a short one ('bf16', 'f16', 'fp16',
 * 'f32'). Other names are returned as given, for the package to accept or reject (so a dtype
 * it learns later needs no change here).
 */
export function normalizeDtype(name) {
  return DTYPE_ALIASES[String(name).toLowerCase()] ?? String(name);
}

/**
 * Bytes of one token's latent row in one layer of a cache with these params: the package's
 * `kvParams.bytesPerToken` (packed storage included), or 4 · rowWidth before it had one.
 */
export function cacheBytesPerToken(kvParams) {
  return typeof kvParams.bytesPerToken === 'number' ? kvParams.bytesPerToken : 4 * kvParams.rowWidth;
}

/**
 * Bytes per token and layer of a standard multi-head cache (K: H·(N+R), V: H·V values) stored
 * in `dtype`.
 */
export function mhaBytesPerToken(spec, dtype = 'float32') {
  const values = spec.heads * (spec.qkNopeHeadDim + spec.qkRopeHeadDim) + spec.heads * spec.vHeadDim;
  return values * (BYTES_PER_VALUE[dtype] ?? 4);
}

// ---- the layer --------------------------------------------------------------------------------

/**
 * The layer's constructor arguments: from `spec.hfConfig` (a DeepSeek config.json) when set,
 * else from the sizes in `spec` (hidden, heads, kvLoraRank, qkNopeHeadDim, qkRopeHeadDim,
 * vHeadDim, pageSize; optional qLoraRank) with V2-Lite's rope theta and YaRN scaling.
 */
export function layerArgs(mla, spec, maxSeqLen) {
  const cacheDtype = spec.cacheDtype ?? 'float32';
  const dtype = spec.dtype ?? 'float32';
  // The weight dtype as the layer takes it: `dtype`, and the same for the norms and o_proj.
  const dtypes = dtype === 'float32' ? {} : {dtype, normDtype: dtype, oProjDtype: dtype};
  if (spec.hfConfig) {
    const {args} = mla.fromHFConfig(spec.hfConfig, {maxSeqLen, pageSize: spec.pageSize});
    const kvParams = cacheDtype === 'float32' ? args.kvParams : new mla.KVCacheParams({
      headDim: args.kvParams.headDim, pageSize: args.kvParams.pageSize, dtype: cacheDtype,
      ...(cacheDtype === 'float8_e4m3fn' ? {qkRopeHeadDim: args.qkRopeHeadDim} : {})});
    return {...args, kvParams, ...dtypes};
  }
  const rope = new mla.DeepseekYarnRotaryEmbedding({
    dim: spec.qkRopeHeadDim, nHeads: spec.heads, theta: V2_LITE.ropeTheta, maxSeqLen,
    scalingParams: V2_LITE.yarn});
  return {
    rope, numAttentionHeads: spec.heads, numKeyValueHeads: spec.heads, hiddenSize: spec.hidden,
    kvParams: new mla.KVCacheParams({headDim: spec.kvLoraRank + spec.qkRopeHeadDim, pageSize: spec.pageSize,
                                     ...(cacheDtype === 'float32' ? {} : {dtype: cacheDtype}),
                                     // the fp8 row layout needs the rope width
                                     ...(cacheDtype === 'float8_e4m3fn' ? {qkRopeHeadDim: spec.qkRopeHeadDim} : {})}),
    ...dtypes,
    ...(spec.qLoraRank ? {qLoraRank: spec.qLoraRank} : {}),
    kvLoraRank: spec.kvLoraRank, qkNopeHeadDim: spec.qkNopeHeadDim,
    qkRopeHeadDim: spec.qkRopeHeadDim, vHeadDim: spec.vHeadDim,
  };
}

let modelCount = 0;

/**
 * A fresh rope + layer + cache on the active backend, loaded with the host weights (none:
 * the layer is left unbuilt, e.g. to ask it for its weight shapes). The cache has pages for
 * sequences of `seqLens` tokens. The layer is named `${namePrefix}_${backend}_${n}`.
 * `spec.dtype` (weights) and `spec.cacheDtype` go to the layer and the cache; an Error of the
 * package about them (a dtype it does not take) comes out as it is.
 *
 * `weightBytes`: what the layer holds after loading its weights, as tf.memory().numBytes sees
 * it (the bytes actually stored, packed or not; derived weights such as the absorbed W_UK / W_UV
 * come later, on the first step). `numParams`: the weights' values.
 */
export function buildModel(mla, spec, weights, seqLens, namePrefix = 'mla_demo') {
  const args = layerArgs(mla, spec, Math.max(...seqLens));
  const bytesBefore = tf.memory().numBytes;
  const layer = new mla.LatentAttentionWithRope({
    ...args, ...(spec.graphMode ? {graphMode: spec.graphMode} : {}),
    name: `${namePrefix}_${tf.getBackend()}_${++modelCount}`});
  let numParams = 0;
  if (weights !== null) {
    const tensors = {};
    try {
      for (const [name, {shape, values}] of Object.entries(weights)) {
        tensors[name] = tf.tensor(values, shape);
        numParams += values.length;
      }
      layer.loadStateDict(tensors);
    } catch (e) {
      layer.dispose();
      throw e;
    } finally {
      Object.values(tensors).forEach((t) => t.dispose());
    }
  }
  const weightBytes = tf.memory().numBytes - bytesBefore;
  const pages = seqLens.reduce((sum, n) => sum + Math.ceil(n / args.kvParams.pageSize), 0);
  const cache = new mla.PagedKVCache(args.kvParams, {totalNumPages: Math.max(1, pages)});
  return {layer, cache, args, kvParams: args.kvParams, weightBytes, numParams};
}

/**
 * Disposes the model's layer and cache; returns the bytes the layer held at that point
 * (tf.memory().numBytes before − after disposing it: its weights and the derived ones).
 */
export function disposeModel(model) {
  model.cache.dispose();
  const before = tf.memory().numBytes;
  model.layer.dispose();
  return before - tf.memory().numBytes;
}

/**
 * One step: `counts[b]` new rows of sequence `seqIds[b]` (x: the rows of the batch,
 * concatenated); the cache reserves them (fetch), the layer runs, the cache commits them (step).
 * Returns the output as host numbers when `read` (awaited: a timed step ends with its result),
 * and the row offsets.
 */
export async function runStep(model, seqIds, counts, xValues, hidden, read = true) {
  const offsets = [0];
  for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
  const x = tf.tensor2d(xValues, [offsets[offsets.length - 1], hidden]);
  const collection = model.cache.fetch(seqIds, counts);
  const y = model.layer.forward(x, {kvCollection: collection, inputRowOffsets: offsets});
  model.cache.step(seqIds, counts);
  const values = read ? await y.data() : null;
  x.dispose();
  y.dispose();
  return {values, offsets};
}

/**
 * WebGPU compiles a pipeline the first time each program runs (seconds each on SwiftShader).
 * This compiles them all first, in parallel and without computing anything: tfjs's
 * compile-only mode walks one prefill and (with steps > 0) one decode step of the run's shapes
 * and creates the pipelines. It runs on a model of its own (`makeModel()`, disposed here): in
 * this mode no kernel computes, so tensors a layer derives and keeps (the absorbed W_UK / W_UV)
 * would hold garbage. `onPending(promises)` gets the pipelines still compiling.
 */
export async function compilePipelines(makeModel, {seqIds, prompts, steps, inputs, hidden}, onPending) {
  const warm = makeModel();
  try {
    seqIds.forEach((id) => warm.cache.claim(id));
    tf.env().set('WEBGPU_ENGINE_COMPILE_ONLY', true);
    try {
      await runStep(warm, seqIds, prompts, gatherInputs(inputs, prompts.map((p) => [0, p]), hidden), hidden, false);
      if (steps > 0) {
        await runStep(warm, seqIds, prompts.map(() => 1),
                      gatherInputs(inputs, prompts.map((p) => [p, p + 1]), hidden), hidden, false);
      }
    } finally {
      tf.env().set('WEBGPU_ENGINE_COMPILE_ONLY', false);
    }
    const backend = tf.backend();
    if (onPending) onPending(Object.values(backend.pipelineCache ?? {}).filter((p) => p instanceof Promise));
    await backend.checkCompileCompletionAsync();
  } finally {
    warm.cache.dispose();
    warm.layer.dispose();
  }
}

/**
 * One sequence alone (a prefill of `prompt` tokens, then `steps` decode steps of one token)
 * on `model`, whose cache must have room for it; `input` holds its rows. Returns each step's
 * output; `onStep(i)` is called after step i (0: the prefill).
 */
export async function runSequence(model, prompt, steps, input, hidden, onStep) {
  model.cache.claim(0);
  const outputs = [(await runStep(model, [0], [prompt], input.subarray(0, prompt * hidden), hidden)).values];
  if (onStep) onStep(0);
  for (let s = 0; s < steps; s++) {
    const from = (prompt + s) * hidden;
    outputs.push((await runStep(model, [0], [1], input.subarray(from, from + hidden), hidden)).values);
    if (onStep) onStep(s + 1);
  }
  return outputs;
}

/**
 * The largest |got − ref| over matching arrays, and max |ref|. maxDiff is NaN when any value
 * of either is not finite.
 */
export function compareOutputs(got, ref) {
  let maxDiff = 0;
  let maxRef = 0;
  let finite = true;
  ref.forEach((r, i) => {
    const g = got[i];
    for (let j = 0; j < r.length; j++) {
      if (!Number.isFinite(r[j]) || !Number.isFinite(g[j])) finite = false;
      maxDiff = Math.max(maxDiff, Math.abs(g[j] - r[j]));
      maxRef = Math.max(maxRef, Math.abs(r[j]));
    }
  });
  return {maxDiff: finite ? maxDiff : NaN, maxRef};
}
