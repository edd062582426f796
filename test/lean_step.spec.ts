import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {isSoftwareAdapterInfo} from '../src/kernels/webgpu/webgpu_util.js';
import {describeEachBackend, expectClose, expectNoNewTensors} from './helpers/backends.js';
import {seededRandom} from './helpers/mla_fixtures.js';

/**
 * The lean step (issue 10): one plan per step shared by every layer, q written where it is
 * read, the same host-side errors on every backend — and what a step costs on webgpu, counted
 * through the backend (dispatches per layer step, host→GPU uploads per model step).
 */

const SMALL = {hiddenSize: 256, numHeads: 8, kvLoraRank: 64, nope: 32, rope: 16, v: 32};
const NUM_LAYERS = 4;

function stackArgs(qLoraRank: number|null, pageSize: number, name: string) {
  const rope = new mla.RotaryEmbedding({dim: SMALL.rope, nHeads: SMALL.numHeads, theta: 10000,
                                        maxSeqLen: 256, interleaved: true});
  const kvParams = new mla.KVCacheParams({headDim: SMALL.kvLoraRank + SMALL.rope, pageSize,
                                          numLayers: NUM_LAYERS});
  const layers = Array.from({length: NUM_LAYERS}, (_, i) => new mla.LatentAttentionWithRope({
    rope, numAttentionHeads: SMALL.numHeads, numKeyValueHeads: SMALL.numHeads,
    hiddenSize: SMALL.hiddenSize, kvParams, qLoraRank, kvLoraRank: SMALL.kvLoraRank,
    qkNopeHeadDim: SMALL.nope, qkRopeHeadDim: SMALL.rope, vHeadDim: SMALL.v,
    name: `${name}_${i}`,
  }));
  return {rope, kvParams, layers};
}

/** Seeded weights as plain arrays, so both backends load the same values. */
function weightValues(layer: mla.LatentAttentionWithRope, seed: number): Map<string, {shape: number[], values: Float32Array}> {
  const random = seededRandom(seed);
  const out = new Map<string, {shape: number[], values: Float32Array}>();
  for (const [name, shape] of layer.expectedWeightShapes()) {
    const size = shape.reduce((a, b) => a * b, 1);
    const scale = 1 / Math.sqrt(shape[shape.length - 1]);
    out.set(name, {shape, values: Float32Array.from({length: size}, () =>
        name.endsWith('layernorm.weight') ? 1 + random(0.2) : random(scale))});
  }
  return out;
}

interface StackRun {
  /** The last layer's output of each step, flattened. */
  outputs: Float32Array[];
  /** Dispatches and uploads of the counted decode step (webgpu; zeros elsewhere). */
  count: mla.BackendWorkCount;
}

/**
 * Runs a 4-layer stack sharing one cache: a prefill step (ragged), two decode steps (the second
 * counted). Each layer's output feeds the next, as in a model.
 */
async function runStack(qLoraRank: number|null, batch: number, seed: number): Promise<StackRun> {
  const {rope, layers} = stackArgs(qLoraRank, 4, `stack${qLoraRank ?? 'q'}_${batch}`);
  const cacheParams = layers[0].kvParams;
  const cache = new mla.PagedKVCache(cacheParams, {totalNumPages: 64});
  layers.forEach((layer, i) => {
    const weights: Record<string, tf.Tensor> = {};
    for (const [name, {shape, values}] of weightValues(layer, seed + i)) weights[name] = tf.tensor(values, shape);
    layer.loadStateDict(weights);
    Object.values(weights).forEach((w) => w.dispose());
  });
  const random = seededRandom(seed + 100);
  const seqIds = Array.from({length: batch}, (_, b) => b);
  seqIds.forEach((id) => cache.claim(id));
  const outputs: Float32Array[] = [];
  let count: mla.BackendWorkCount = {dispatches: 0, uploads: 0, programs: []};
  const step = (counts: number[]): tf.Tensor2D => {
    const collection = cache.fetch(seqIds, counts);
    const total = counts.reduce((a, b) => a + b, 0);
    let h = tf.tensor2d(Float32Array.from({length: total * SMALL.hiddenSize}, () => random(1)),
                        [total, SMALL.hiddenSize]);
    const offsets = [0, ...counts.map((_, b) => counts.slice(0, b + 1).reduce((a, c) => a + c, 0))];
    layers.forEach((layer, layerIdx) => {
      const next = layer.forward(h, {kvCollection: collection, inputRowOffsets: offsets, layerIdx});
      h.dispose();
      h = next;
    });
    cache.step(seqIds, counts);
    return h;
  };
  const prefillCounts = seqIds.map((b) => 3 + 2 * b);
  for (const counts of [prefillCounts, seqIds.map(() => 1)]) {
    const y = step(counts);
    outputs.push(await y.data() as Float32Array);
    y.dispose();
  }
  const counted = await mla.countBackendWork(() => step(seqIds.map(() => 1)));
  count = counted.count;
  outputs.push(await counted.result.data() as Float32Array);
  counted.result.dispose();
  cache.dispose();
  layers.forEach((layer) => layer.dispose());
  rope.dispose();
  return {outputs, count};
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

describe('lean step: a 4-layer stack sharing one cache on webgpu', () => {
  let originalBackend: string;
  beforeAll(async () => {
    originalBackend = tf.getBackend();
  });
  afterAll(async () => {
    await tf.setBackend(originalBackend);
  });

  for (const qLoraRank of [null, 96]) {
    for (const batch of [1, 4]) {
      const what = `${qLoraRank === null ? 'plain q' : 'q-LoRA'}, batch ${batch}`;
      it(`${what}: ≤ 8 dispatches per layer decode step, ≤ 3 uploads per model step, equals cpu within 1e-4`, async () => {
        await tf.setBackend('cpu');
        const cpu = await runStack(qLoraRank, batch, 11);
        if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend is not available');
        const before = tf.memory().numTensors;
        const gpu = await runStack(qLoraRank, batch, 11);
        expect(tf.memory().numTensors).withContext('tensors left on webgpu').toBe(before);
        const perLayer = gpu.count.dispatches / NUM_LAYERS;
        expect(perLayer).withContext(`dispatches per layer step (${gpu.count.programs.join(', ')})`)
            .toBeLessThanOrEqual(8);
        expect(gpu.count.uploads).withContext('uploads per model step').toBeLessThanOrEqual(3);
        // The count is real: a step does dispatch and does upload x.
        expect(perLayer).toBeGreaterThanOrEqual(5);
        expect(gpu.count.uploads).toBeGreaterThanOrEqual(1);
        gpu.outputs.forEach((out, i) => {
          expectClose(out, cpu.outputs[i], 1e-4 * Math.max(1, maxAbs(cpu.outputs[i])), `${what} step ${i}`);
        });
      }, 120000);
    }
  }
});

describeEachBackend('lean step: the step plan', (backend) => {
  function oneLayer(bufferSize = 16384, graphMode: 'prefill'|'decode' = 'prefill') {
    const {layers} = stackArgs(null, 4, `plan_${backend}_${bufferSize}_${graphMode}`);
    const layer = new mla.LatentAttentionWithRope({
      rope: layers[0].rope, numAttentionHeads: SMALL.numHeads, numKeyValueHeads: SMALL.numHeads,
      hiddenSize: SMALL.hiddenSize, kvParams: layers[0].kvParams, kvLoraRank: SMALL.kvLoraRank,
      qkNopeHeadDim: SMALL.nope, qkRopeHeadDim: SMALL.rope, vHeadDim: SMALL.v, bufferSize, graphMode,
    });
    const weights: Record<string, tf.Tensor> = {};
    for (const [name, {shape, values}] of weightValues(layer, 5)) weights[name] = tf.tensor(values, shape);
    layer.loadStateDict(weights);
    Object.values(weights).forEach((w) => w.dispose());
    layers.forEach((l) => l.dispose());
    // The rope table is made on first use; made here, it is not counted as a step's tensor.
    void layer.rope.freqsCis;
    return layer;
  }

  it('is made once per step, shared by the layers, freed by cache.step; a finished collection is refused', async () => {
    const layer = oneLayer();
    const cache = new mla.PagedKVCache(layer.kvParams, {totalNumPages: 16});
    await expectNoNewTensors(async () => {
      cache.claim(0);
      const collection = cache.fetch([0], [5]);
      const x = tf.randomNormal([5, SMALL.hiddenSize]) as tf.Tensor2D;
      const ys = [0, 1, 2].map((layerIdx) => layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 5], layerIdx}));
      const plan = collection.plan;
      // A boolean: jasmine prints objects given to toBe (a blocking read of the plan's webgpu tensors).
      expect(collection.plan === plan).withContext('the same plan for every layer').toBe(true);
      const withPlan = tf.memory().numTensors;
      cache.step([0], [5]);
      expect(plan.isDisposed).toBe(true);
      expect(tf.memory().numTensors).toBeLessThan(withPlan);
      expect(() => layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 5]}))
          .toThrowError(/kvCollection: its step is over/);
      ys.forEach((y) => y.dispose());
      x.dispose();
    }, 'a step with its plan');
    cache.dispose();
    layer.dispose();
    layer.rope.dispose();
  });

  it('forward adds a residual inside o_proj: forward + residual on both paths; a wrong one is refused', async () => {
    for (const graphMode of ['prefill', 'decode'] as const) {
      const layer = oneLayer(16384, graphMode);
      // The decode path makes the absorbed W_UK / W_UV on its first step and keeps them: not a leak.
      const warmUp = new mla.PagedKVCache(layer.kvParams, {totalNumPages: 1});
      warmUp.claim(0);
      tf.tidy(() => layer.forward(tf.zeros([1, SMALL.hiddenSize]) as tf.Tensor2D,
                                  {kvCollection: warmUp.fetch([0], [1]), inputRowOffsets: [0, 1]}));
      warmUp.dispose();
      await expectNoNewTensors(async () => {
        const x = tf.randomNormal([5, SMALL.hiddenSize], 0, 1, 'float32', 3) as tf.Tensor2D;
        const residual = tf.randomNormal([5, SMALL.hiddenSize], 0, 1, 'float32', 4) as tf.Tensor2D;
        const outputs: tf.Tensor2D[] = [];
        for (const withResidual of [false, true]) {
          const cache = new mla.PagedKVCache(layer.kvParams, {totalNumPages: 16});
          cache.claim(0);
          const kvCollection = cache.fetch([0], [5]);
          outputs.push(layer.forward(x, {kvCollection, inputRowOffsets: [0, 5], ...(withResidual ? {residual} : {})}));
          cache.step([0], [5]);
          cache.dispose();
        }
        const want = tf.add(outputs[0], residual);
        expectClose(await outputs[1].data(), await want.data(), 1e-5, `${backend} ${graphMode}: forward with a residual`);
        const cache = new mla.PagedKVCache(layer.kvParams, {totalNumPages: 16});
        cache.claim(0);
        const kvCollection = cache.fetch([0], [5]);
        const wrong = tf.zeros([4, SMALL.hiddenSize]) as tf.Tensor2D;
        expect(() => layer.forward(x, {kvCollection, inputRowOffsets: [0, 5], residual: wrong}))
            .toThrowError(new RegExp(`forward residual: expected a float32 tensor of x's shape \\[5, ${SMALL.hiddenSize}\\], ` +
                                     `got float32 \\[4, ${SMALL.hiddenSize}\\]`));
        expect(cache.numFreePages).toBe(16);  // the failed step's pages went back
        cache.dispose();
        tf.dispose([x, residual, want, wrong, ...outputs]);
      }, `residual ${graphMode}`);
      layer.dispose();
      layer.rope.dispose();
    }
  });

  it('refuses a prefillMetadata made for an earlier step; accepts one of another bufferSize', async () => {
    const layer = oneLayer(8);
    const small = oneLayer(4);
    const cache = new mla.PagedKVCache(layer.kvParams, {totalNumPages: 16});
    cache.claim(0);
    cache.claim(1);
    let collection = cache.fetch([0, 1], [5, 3]);
    const stale = layer.createMlaPrefillMetadata([0, 5, 8], collection);
    const x = tf.randomNormal([8, SMALL.hiddenSize]) as tf.Tensor2D;
    layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 5, 8], prefillMetadata: stale}).dispose();
    cache.step([0, 1], [5, 3]);
    collection = cache.fetch([0, 1], [5, 3]);
    expect(() => layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 5, 8], prefillMetadata: stale}))
        .toThrowError(/prefillMetadata: does not describe this step/);
    // The failed step rolled back: fetch again. Metadata of smaller buffers is a valid plan.
    collection = cache.fetch([0, 1], [5, 3]);
    const other = small.createMlaPrefillMetadata([0, 5, 8], collection);
    const yOther = layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 5, 8], prefillMetadata: other});
    const otherValues = await yOther.data();
    cache.rollback(collection);
    collection = cache.fetch([0, 1], [5, 3]);
    const yOwn = layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 5, 8]});
    expectClose(otherValues, await yOwn.data(), 1e-4 * Math.max(1, maxAbs(await yOwn.data())),
                `${backend}: another chunking of the same step`);
    [x, yOther, yOwn].forEach((t) => t.dispose());
    cache.dispose();
    layer.dispose();
    small.dispose();
    layer.rope.dispose();
    small.rope.dispose();
  }, 60000);

  it('checks tensor offsets by shape on every backend alike, before any dispatch', () => {
    const layer = oneLayer();
    const cache = new mla.PagedKVCache(layer.kvParams, {totalNumPages: 16});
    cache.claim(0);
    const collection = cache.fetch([0], [2]);
    const x = tf.zeros([2, SMALL.hiddenSize]) as tf.Tensor2D;
    const offsets = tf.tensor1d([0, 1, 2], 'int32');
    expect(() => layer.forward(x, {kvCollection: collection, inputRowOffsets: offsets}))
        .toThrowError(/inputRowOffsets: expected shape \[2\] \(batch \+ 1\), got \[3\]/);
    expect(cache.pagesOf(0)).toEqual([]);
    [x, offsets].forEach((t) => t.dispose());
    cache.dispose();
    layer.dispose();
    layer.rope.dispose();
  });
});

/** y[g, m, n] = Σ_k x̂[g, m, k] · w[g, n, k] in float64, x̂ the (optionally normalized) rows. */
function linearReference(rows: Float32Array[], weightRows: Float32Array[], gamma: Float32Array|null,
                         eps: number): Float64Array {
  const out = new Float64Array(rows.length * weightRows.length);
  rows.forEach((row, m) => {
    let inverseRms = 1;
    if (gamma !== null) inverseRms = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / row.length + eps);
    weightRows.forEach((w, n) => {
      let sum = 0;
      for (let k = 0; k < row.length; k++) sum += row[k] * inverseRms * (gamma?.[k] ?? 1) * w[k];
      out[m * weightRows.length + n] = sum;
    });
  });
  return out;
}

describeEachBackend('mlaLinear options', (backend) => {
  const random = seededRandom(3);
  const values = (n: number) => Float32Array.from({length: n}, () => random(1));
  const rowsOf = (v: Float32Array, width: number, take: number) =>
      Array.from({length: v.length / width}, (_, i) => v.slice(i * width, i * width + take));

  for (const [m, k] of [[1, 8], [5, 12], [11, 7]]) {
    it(`M=${m} K=${k}: a second weight block and an RMSNorm of wider x rows equal the reference`, async () => {
      const xWidth = k + 5;
      const xv = values(m * xWidth);
      // 8 rows of w: 4 or 8 output columns per invocation, so the program's weight registers
      // include one numbered 2 (a register once named `w2` shadowed the second weight's buffer).
      const wv = values(8 * k);
      const w2v = values(3 * k);
      const gv = values(k);
      await expectNoNewTensors(async () => {
        const x = tf.tensor2d(xv, [m, xWidth]);
        const w = tf.tensor2d(wv, [8, k]);
        const w2 = tf.tensor2d(w2v, [3, k]);
        const gamma = tf.tensor1d(gv);
        const both = mla.mlaLinear(x, w, {w2, readFirstColumns: true});
        expect(() => mla.mlaLinear(x, w)).toThrowError(/mlaLinear w: expected shape \[\?, \d+\]/);
        const normed = mla.mlaLinear(x, w, {gamma, normEps: 1e-5, readFirstColumns: true});
        expect(both.shape).toEqual([m, 11]);
        const xRows = rowsOf(xv, xWidth, k);
        const weightRows = [...rowsOf(wv, k, k), ...rowsOf(w2v, k, k)];
        expectClose(await both.data(), linearReference(xRows, weightRows, null, 0), 1e-5 * k,
                    `${backend} w2`);
        expectClose(await normed.data(), linearReference(xRows, rowsOf(wv, k, k), gv, 1e-5), 1e-5 * k,
                    `${backend} gamma`);
        [x, w, w2, gamma, both, normed].forEach((t) => t.dispose());
      }, 'mlaLinear options');
    });
  }

  it('tokenMajor: x [M, G, K] gives [M, G, N] equal to the per-entry products', async () => {
    const [m, g, k, n] = [3, 4, 8, 5];
    const xv = values(m * g * k);
    const wv = values(g * n * k);
    const x = tf.tensor3d(xv, [m, g, k]);
    const w = tf.tensor3d(wv, [g, n, k]);
    const y = mla.mlaLinear(x, w, {tokenMajor: true});
    expect(y.shape).toEqual([m, g, n]);
    const expected = tf.tidy(() => tf.transpose(tf.matMul(tf.transpose(x, [1, 0, 2]), w, false, true), [1, 0, 2]));
    expectClose(await y.data(), await expected.data(), 1e-5 * k, `${backend} tokenMajor`);
    [x, w, y, expected].forEach((t) => t.dispose());
  });

  it('names the argument of a bad option', () => {
    const x = tf.zeros([2, 8]) as tf.Tensor2D;
    const w = tf.zeros([3, 8]) as tf.Tensor2D;
    const g = tf.zeros([7]) as tf.Tensor1D;
    expect(() => mla.mlaLinear(x, w, {gamma: g, normEps: 1e-6})).toThrowError(/mlaLinear gamma: expected shape \[8\]/);
    expect(() => mla.mlaLinear(x, w, {gamma: tf.zeros([8]) as tf.Tensor1D})).toThrowError(/mlaLinear normEps/);
    [x, w, g].forEach((t) => t.dispose());
  });
});

describeEachBackend('fusedRope reading the fused projection', (backend) => {
  it('2-D q | kv rows and W_UKᵀ give the absorbed query [T, H, L + R] and the same cache rows', async () => {
    const random = seededRandom(9);
    const [T, H, N, R, L] = [3, 2, 8, 4, 12];
    const width = H * (N + R) + L + R;
    const qkvValues = Float32Array.from({length: T * width}, () => random(1));
    const wUkTValues = Float32Array.from({length: H * L * N}, () => random(0.3));
    const rope = new mla.RotaryEmbedding({dim: R, nHeads: H, theta: 10000, maxSeqLen: 16, interleaved: false});
    const tokenInfo = tf.tensor2d([0, 2, 5, 0, 3, 6, 0, 4, 7], [T, 3], 'int32');
    const gamma = tf.tensor1d(Float32Array.from({length: L}, () => 1 + random(0.2)));
    const qkv = tf.tensor2d(qkvValues, [T, width]);
    const wUkT = tf.tensor3d(wUkTValues, [H, L, N]);
    const cacheA = tf.zeros([3, 4, L + R]) as tf.Tensor3D;
    const cacheB = tf.zeros([3, 4, L + R]) as tf.Tensor3D;
    const attrs = {eps: 1e-6, interleaved: false, numHeads: H, qkNopeHeadDim: N};
    const query = mla.fusedRope(qkv, qkv, gamma, rope.freqsCis, tokenInfo, cacheA, attrs, wUkT);
    // The reference: the 3-D form on separate q and kv, then W_UK per head by tf ops.
    const q3 = tf.reshape(tf.slice(qkv, [0, 0], [T, H * (N + R)]), [T, H, N + R]) as tf.Tensor3D;
    const kv = tf.slice(qkv, [0, H * (N + R)], [T, L + R]) as tf.Tensor2D;
    const roped = mla.fusedRope(q3, kv, gamma, rope.freqsCis, tokenInfo, cacheB, {eps: 1e-6, interleaved: false});
    const expected = tf.tidy(() => {
      const [qNope, qRope] = tf.split(roped, [N, R], 2);
      const qLat = tf.transpose(tf.matMul(tf.transpose(qNope, [1, 0, 2]), wUkT, false, true), [1, 0, 2]);
      return tf.concat([qLat, qRope], 2);
    });
    expect(query.shape).toEqual([T, H, L + R]);
    expectClose(await query.data(), await expected.data(), 1e-5, `${backend} absorbed query`);
    expectClose(await cacheA.data(), await cacheB.data(), 1e-6, `${backend} cache rows`);
    [tokenInfo, gamma, qkv, wUkT, cacheA, cacheB, query, q3, kv, roped, expected].forEach((t) => t.dispose());
    rope.dispose();
  });
});

describe('software adapter detection', () => {
  it('reads the adapter info tfjs keeps or the device\'s own, by architecture or description', () => {
    expect(isSoftwareAdapterInfo({vendor: 'google', architecture: 'swiftshader'})).toBe(true);
    expect(isSoftwareAdapterInfo({vendor: 'mesa', architecture: '', description: 'llvmpipe (LLVM 15)'})).toBe(true);
    expect(isSoftwareAdapterInfo({vendor: 'nvidia', architecture: 'hopper'})).toBe(false);
    expect(isSoftwareAdapterInfo(undefined)).toBe(false);
  });

  it('agrees with the running webgpu backend (SwiftShader in the test browser)', async () => {
    const original = tf.getBackend();
    if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend is not available');
    const backend = tf.backend() as unknown as Parameters<typeof import('../src/kernels/webgpu/webgpu_util.js').isSoftwareAdapter>[0];
    const {isSoftwareAdapter} = await import('../src/kernels/webgpu/webgpu_util.js');
    expect(isSoftwareAdapter(backend)).toBe(true);
    // Without tfjs's private copy, the device's own info decides.
    const device = (backend as unknown as {device: {adapterInfo?: object}}).device;
    if (device.adapterInfo !== undefined) {
      expect(isSoftwareAdapter({device} as unknown as typeof backend)).toBe(true);
    }
    await tf.setBackend(original);
  });
});
