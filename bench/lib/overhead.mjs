// The overhead case: one decode step of a stack of LatentAttentionWithRope layers at small
// sizes, where compute is negligible and the step's cost is what every layer pays regardless
// of size: dispatches (tens of µs each on a real GPU) and host→GPU uploads. It counts both with
// the package's countBackendWork and times the step against the same stack written with plain
// tfjs ops (lib/composition.mjs, one Composition per layer).
//
// Only the public API is used: the layers' forward with layerIdx, one PagedKVCache with
// numLayers = the stack's depth, fetch per model step (rolled back afterwards so every
// repetition is the same step at the same context).
import * as tf from '@tensorflow/tfjs-core';
import {countBackendWork} from '../../dist/index.js';
import {prng, uniform} from '../../demos/common/helpers.mjs';
import {Composition} from './composition.mjs';
import * as model from './model.mjs';
import {median, now, sync} from './timing.mjs';

/** The stack: 4 layers of hidden 256, 8 heads, kvLoraRank 64, nope 32, rope 16, v 32. */
export const OVERHEAD = Object.freeze({
  name: 'overhead stack (small sizes)',
  numHeads: 8,
  hiddenSize: 256,
  kvLoraRank: 64,
  qkNopeHeadDim: 32,
  qkRopeHeadDim: 16,
  vHeadDim: 32,
  ropeTheta: 10000,
  rmsNormEps: 1e-6,
  yarn: model.V2_LITE.yarn,
  qLoraRank: null,
  pageSize: 16,
  numLayers: 4,
  /** q-LoRA variant's rank. */
  qLoraRankOfVariant: 96,
  /** Context of the step: the new token at position context − 1 over context − 1 cached rows. */
  context: 64,
});

export const OVERHEAD_DESCRIPTION =
    `decode step of a stack of ${OVERHEAD.numLayers} layers (hidden ${OVERHEAD.hiddenSize}, ` +
    `${OVERHEAD.numHeads} heads, kvLoraRank ${OVERHEAD.kvLoraRank}, nope ${OVERHEAD.qkNopeHeadDim}, ` +
    `rope ${OVERHEAD.qkRopeHeadDim}, v ${OVERHEAD.vHeadDim}; plain q or q-LoRA ${OVERHEAD.qLoraRankOfVariant}) ` +
    `sharing one PagedKVCache (numLayers ${OVERHEAD.numLayers}, layerIdx 0..${OVERHEAD.numLayers - 1}) ` +
    `at context ${OVERHEAD.context}; model step = x uploaded from the host, cache.fetch, ` +
    `${OVERHEAD.numLayers} × layer.forward, read back (cache.rollback keeps the context)`;

export const OVERHEAD_COMPOSITION =
    'the same stack in plain tfjs ops: one Composition.decode (absorbed, concat-grown dense ' +
    'latent cache) per layer, outputs chained';

/** The four cases: plain q and q-LoRA, batch 1 and 4. */
export function overheadCases() {
  const cases = [];
  for (const qLora of [false, true]) {
    for (const B of [1, 4]) {
      const q = qLora ? 'qlora' : 'q';
      cases.push({kind: 'overhead', id: `overhead-${q}-b${B}`, qLora, B,
                  name: `overhead ${OVERHEAD.numLayers} layers ${qLora ? 'q-LoRA' : 'plain q'} B=${B}`});
    }
  }
  return cases;
}

const errorText = (e) => String(e?.message ?? e).split('\n')[0].slice(0, 160);

/** How often each program name occurs, in first-seen order: {name: count}. */
function histogram(names) {
  const out = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

/** The stack, its composition, a cache holding the context in every layer, and the step functions. */
async function setup(c) {
  const cfg = {...OVERHEAD, qLoraRank: c.qLora ? OVERHEAD.qLoraRankOfVariant : null};
  const {numLayers, context, hiddenSize} = cfg;
  const B = c.B;
  const S0 = context - 1;
  const maxSeqLen = context + 8;
  const rope = model.makeRope(cfg, maxSeqLen);
  const kvParams = model.makeKvParams(cfg, numLayers);
  const weights = [];
  const layers = [];
  const comps = [];
  for (let l = 0; l < numLayers; l++) {
    weights.push(model.makeWeights(cfg, 200 + 10 * l));
    layers.push(model.makeLayer(cfg, rope, kvParams, weights[l], `bench_overhead_${c.id}_${l}`));
    comps.push(new Composition(cfg, weights[l], maxSeqLen));
  }
  // B sequences of S0 cached tokens; every layer's storage filled with its own dense context,
  // which the composition holds as its concat-grown caches.
  const {cache, collection, ids} = model.decodeCache(kvParams, B, S0);
  const ckv = [];
  const kpe = [];
  for (let l = 0; l < numLayers; l++) {
    const dense = model.randomTensor([B, S0, model.rowWidth(cfg)], 300 + l);
    await model.fillPagedCache(collection, dense, l);
    ckv.push(tf.slice(dense, [0, 0, 0], [B, S0, cfg.kvLoraRank]));
    kpe.push(tf.slice(dense, [0, 0, cfg.kvLoraRank], [B, S0, cfg.qkRopeHeadDim]));
    dense.dispose();
  }
  cache.rollback(collection);
  const xValues = uniform(prng(400 + B), B * hiddenSize, 1);
  const offsets = Array.from({length: B + 1}, (_, b) => b);
  const ones = ids.map(() => 1);
  const positions = ids.map(() => S0);

  /**
   * One model step of the stack; `perLayer(l, fn)` wraps layer l's forward (to count it alone).
   * Returns the output values.
   */
  const layerStep = async (perLayer = (l, fn) => fn()) => {
    const x = tf.tensor2d(xValues, [B, hiddenSize]);
    const step = cache.fetch(ids, ones);
    let h = x;
    try {
      for (let l = 0; l < numLayers; l++) {
        const input = h;
        h = await perLayer(l, () => layers[l].forward(input, {kvCollection: step, inputRowOffsets: offsets, layerIdx: l}));
        if (input !== x) input.dispose();
      }
    } finally {
      cache.rollback(step);
    }
    const values = await h.data();
    tf.dispose([x, h]);
    return values;
  };
  const compStep = async () => {
    const x = tf.tensor2d(xValues, [B, hiddenSize]);
    let h = x;
    const grown = [];
    for (let l = 0; l < numLayers; l++) {
      const out = comps[l].decode(h, ckv[l], kpe[l], positions);
      grown.push(out.ckv, out.kpe);
      if (h !== x) h.dispose();
      h = out.y;
    }
    const values = await h.data();
    tf.dispose([x, h, ...grown]);
    return values;
  };
  const dispose = () => {
    layers.forEach((layer) => layer.dispose());
    comps.forEach((comp) => comp.dispose());
    weights.forEach((w) => tf.dispose(Object.values(w)));
    tf.dispose([...ckv, ...kpe]);
    cache.dispose();
    rope.dispose();
  };
  return {cfg, layerStep, compStep, dispose};
}

/**
 * Measures one overhead case: a numerical check (the stack's output against the composition's),
 * dispatches and uploads of a model step (after warm-ups, so one-time work such as derived
 * weights is not counted), and the median wall time of a model step, layer stack and
 * composition interleaved, each with an idle queue before it.
 */
export async function measureOverheadCase(c, {quick = false} = {}) {
  const plan = {warmups: 3, reps: quick ? 8 : 20};
  const result = {case: c.name, id: c.id, kind: 'overhead', batch: c.B, numLayers: OVERHEAD.numLayers,
                  qLoraRank: c.qLora ? OVERHEAD.qLoraRankOfVariant : null, context: OVERHEAD.context,
                  plan, errors: []};
  let s = null;
  try {
    s = await setup(c);
    const layerTimes = [];
    const compTimes = [];
    let yLayer = null;
    let yComp = null;
    for (let w = 0; w < plan.warmups; w++) {
      yLayer = await s.layerStep();
      yComp = await s.compStep();
    }
    let maxDiff = 0;
    let maxRef = 0;
    for (let i = 0; i < yComp.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(yLayer[i] - yComp[i]));
      maxRef = Math.max(maxRef, Math.abs(yComp[i]));
    }
    const bound = 1e-4 * Math.max(1, maxRef);
    result.check = {what: 'stack output y: layers vs composition', maxAbsDiff: maxDiff, maxAbsRef: maxRef, bound,
                    ok: maxDiff <= bound};

    const counted = tf.getBackend() === 'webgpu';
    await sync();
    const whole = (await countBackendWork(() => s.layerStep())).count;
    const byLayer = [];
    await sync();
    await s.layerStep(async (l, fn) => {
      const {result: y, count} = await countBackendWork(fn);
      byLayer.push(count);
      return y;
    });
    await sync();
    const comp = (await countBackendWork(() => s.compStep())).count;
    const L = OVERHEAD.numLayers;
    result.counted = counted;
    result.dispatchesPerModelStep = counted ? whole.dispatches : null;
    result.dispatchesPerLayerStep = counted ? whole.dispatches / L : null;
    result.dispatchesByLayer = counted ? byLayer.map((k) => k.dispatches) : null;
    result.uploadsPerModelStep = counted ? whole.uploads : null;
    result.uploadsByLayer = counted ? byLayer.map((k) => k.uploads) : null;
    result.programsByLayer = counted ? byLayer.map((k) => histogram(k.programs)) : null;
    result.composition = {
      dispatchesPerModelStep: counted ? comp.dispatches : null,
      dispatchesPerLayerStep: counted ? comp.dispatches / L : null,
      uploadsPerModelStep: counted ? comp.uploads : null,
    };

    const timed = async (fn) => {
      await sync();
      const t0 = now();
      await fn();
      return now() - t0;
    };
    for (let r = 0; r < plan.reps; r++) {
      layerTimes.push(await timed(() => s.layerStep()));
      compTimes.push(await timed(() => s.compStep()));
    }
    result.layerStackMs = median(layerTimes);
    result.compositionMs = median(compTimes);
    result.layerStackTimes = layerTimes;
    result.compositionTimes = compTimes;
    result.speedup = result.compositionMs / result.layerStackMs;
  } catch (e) {
    result.errors.push(errorText(e));
  } finally {
    s?.dispose();
  }
  return result;
}
