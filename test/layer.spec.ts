import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {DeviceRef, KVCacheParams, LatentAttentionWithRope, LatentAttentionWithRopeArgs, PagedKVCache, RotaryEmbedding, ShardingStrategy} from '../src/index.js';
import {describeEachBackend, expectClose} from './helpers/backends.js';
import {GOLDEN_CASES, goldenLayer, loadRandomWeights, randomTensor, ropeOf, seededRandom} from './helpers/mla_fixtures.js';

/** A small random configuration (q-LoRA optional), weights seeded. */
function smallLayer(overrides: Partial<LatentAttentionWithRopeArgs> = {}, seed = 7): LatentAttentionWithRope {
  const rope = new RotaryEmbedding({dim: 8, nHeads: 4, theta: 10000, maxSeqLen: 128});
  const layer = new LatentAttentionWithRope({
    rope, numAttentionHeads: 4, numKeyValueHeads: 4, hiddenSize: 24,
    kvParams: new KVCacheParams({headDim: 16 + 8, pageSize: 4}),
    kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 12, ...overrides,
  });
  loadRandomWeights(layer, seed);
  return layer;
}

interface ScheduledStep {
  seqIds: number[];
  counts: number[];
}

/** Runs `schedule` through `layer` with a fresh cache; returns every step's output values. */
async function runSchedule(layer: LatentAttentionWithRope, schedule: ScheduledStep[], seed: number,
                           pageSize = layer.kvParams.pageSize): Promise<Float32Array[]> {
  const random = seededRandom(seed);
  const cache = new PagedKVCache(new KVCacheParams({headDim: layer.kvParams.headDim, pageSize}),
                                 {totalNumPages: Math.ceil(512 / pageSize)});
  const outputs: Float32Array[] = [];
  for (const {seqIds, counts} of schedule) {
    for (const id of seqIds) if (!cache.contains(id)) cache.claim(id);
    const total = counts.reduce((a, b) => a + b, 0);
    const offsets = [0];
    for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
    const x = randomTensor(random, [total, layer.hiddenSize]) as tf.Tensor2D;
    const collection = cache.fetch(seqIds, counts);
    const y = layer.forward(x, {kvCollection: collection, inputRowOffsets: offsets});
    cache.step(seqIds, counts);
    outputs.push(await y.data() as Float32Array);
    x.dispose();
    y.dispose();
  }
  cache.dispose();
  return outputs;
}

const MIXED_SCHEDULE: ScheduledStep[] = [
  {seqIds: [0, 1, 2], counts: [9, 1, 5]},
  {seqIds: [1, 0], counts: [12, 1]},
  {seqIds: [2, 0, 1], counts: [3, 2, 1]},
  {seqIds: [0], counts: [1]},
];

describeEachBackend('LatentAttentionWithRope', () => {
  it('prefill and decode paths agree on the same inputs (ragged, mixed steps, q-LoRA and not)', async () => {
    for (const qLoraRank of [null, 10]) {
      const results: Float32Array[][] = [];
      for (const graphMode of ['prefill', 'decode', 'auto'] as const) {
        const layer = smallLayer({graphMode, qLoraRank});
        results.push(await runSchedule(layer, MIXED_SCHEDULE, 3));
        layer.dispose();
      }
      for (let i = 0; i < MIXED_SCHEDULE.length; i++) {
        expectClose(results[1][i], results[0][i], 1e-5, `qLoraRank ${qLoraRank} step ${i}: decode vs prefill`);
        expectClose(results[2][i], results[0][i], 1e-5, `qLoraRank ${qLoraRank} step ${i}: auto vs prefill`);
      }
    }
  });

  it('page sizes do not change the result', async () => {
    const layer = smallLayer();
    const reference = await runSchedule(layer, MIXED_SCHEDULE, 5, 128);
    for (const pageSize of [1, 3, 16]) {
      const other = await runSchedule(layer, MIXED_SCHEDULE, 5, pageSize);
      other.forEach((y, i) => expectClose(y, reference[i], 1e-5, `pageSize ${pageSize} step ${i}`));
    }
    layer.dispose();
  });

  it('a context longer than bufferSize runs chunk by chunk with at most bufferSize decompressed rows', async () => {
    const big = smallLayer({graphMode: 'prefill', bufferSize: 16384});
    const reference = await runSchedule(big, MIXED_SCHEDULE, 11);
    big.dispose();
    for (const bufferSize of [1, 5, 8]) {
      const small = smallLayer({graphMode: 'prefill', bufferSize});
      let kvBufferRows: number[] = [];
      const profile = await tf.profile(async () => {
        const chunked = await runSchedule(small, MIXED_SCHEDULE, 11);
        chunked.forEach((y, i) => expectClose(y, reference[i], 1e-5, `bufferSize ${bufferSize} step ${i}`));
      });
      kvBufferRows = profile.kernels.filter((k) => k.name === 'MLAPrefill').map((k) => k.inputShapes[1]![0]);
      expect(kvBufferRows.length).toBeGreaterThan(MIXED_SCHEDULE.length);
      expect(Math.max(...kvBufferRows)).toBeLessThanOrEqual(bufferSize);
      small.dispose();
    }
  });

  it('tensor-parallel shards sum to the unsharded output; replicas equal it', async () => {
    const layer = smallLayer({qLoraRank: 10});
    const reference = await runSchedule(layer, MIXED_SCHEDULE, 13);
    for (const numDevices of [2, 4]) {
      layer.shardingStrategy = ShardingStrategy.tensorParallel(numDevices);
      const shards = layer.shard(Array.from({length: numDevices}, (_, i) => DeviceRef.CPU(i)));
      expect(shards.map((s) => s.numAttentionHeads)).toEqual(new Array(numDevices).fill(4 / numDevices));
      const partials = await Promise.all(shards.map((s) => runSchedule(s, MIXED_SCHEDULE, 13)));
      reference.forEach((y, i) => {
        const sum = new Float32Array(y.length);
        for (const p of partials) p[i].forEach((v, j) => sum[j] += v);
        expectClose(sum, y, 1e-5, `${numDevices} shards, step ${i}`);
      });
      shards.forEach((s) => s.dispose());
    }
    layer.shardingStrategy = ShardingStrategy.replicate(2);
    const replicas = layer.shard([DeviceRef.CPU(), DeviceRef.GPU()]);
    for (const replica of replicas) {
      (await runSchedule(replica, MIXED_SCHEDULE, 13)).forEach((y, i) => expectClose(y, reference[i], 0, `replica step ${i}`));
      replica.dispose();
    }
    expect(() => layer.shardingStrategy = ShardingStrategy.tensorParallel(3))
        .toThrowError(/tensorParallel\(3\) needs a device count that divides numAttentionHeads 4/);
    layer.dispose();
  });

  it('derived weights have the documented shapes and elements', async () => {
    const golden = GOLDEN_CASES[1];  // q-LoRA, V ≠ N
    const rope = ropeOf(golden.config);
    const layer = goldenLayer(golden, rope, 16);
    const {numAttentionHeads: H, qkNopeHeadDim: N, vHeadDim: V, kvLoraRank: L, qkRopeHeadDim: R,
           qLoraRank, hiddenSize} = golden.config;
    const kvB = golden.weights['kv_b_proj.weight'].data;
    const at = (row: number, l: number) => kvB[row * L + l];
    const [wK, wUk, wUv, wqkv] = [layer.wK, layer.wUk, layer.wUv, layer.wqkv];
    expect(wK.shape).toEqual([H * N, L]);
    expect(wUk.shape).toEqual([H, N, L]);
    expect(wUv.shape).toEqual([H, L, V]);
    expect(wqkv.shape).toEqual([qLoraRank! + L + R, hiddenSize]);
    const [k, uk, uv, qkv] = await Promise.all([wK.data(), wUk.data(), wUv.data(), wqkv.data()]);
    const expectK: number[] = [], expectUk: number[] = [], expectUv: number[] = [];
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < N; d++) for (let l = 0; l < L; l++) expectK.push(at(h * (N + V) + d, l));
      for (let d = 0; d < N; d++) for (let l = 0; l < L; l++) expectUk.push(at(h * (N + V) + d, l));
      for (let l = 0; l < L; l++) for (let e = 0; e < V; e++) expectUv.push(at(h * (N + V) + N + e, l));
    }
    // Exact: each element is the float32 of the golden weight it comes from.
    expectClose(k, Float32Array.from(expectK), 0, 'wK');
    expectClose(uk, Float32Array.from(expectUk), 0, 'wUk');
    expectClose(uv, Float32Array.from(expectUv), 0, 'wUv');
    expectClose(qkv, Float32Array.from([...golden.weights['q_a_proj.weight'].data,
                                        ...golden.weights['kv_a_proj_with_mqa.weight'].data]), 0, 'wqkv');
    [wK, wUk, wUv, wqkv].forEach((t) => t.dispose());
    layer.dispose();
    rope.dispose();
  });

  it('apply without a cache is causal attention over [batch, seq, hidden], usable in tf.model', async () => {
    const golden = GOLDEN_CASES[0];
    const step = golden.steps[0];  // one sequence, 5 tokens from an empty cache
    const rope = ropeOf(golden.config);
    const layer = goldenLayer(golden, rope, 16);
    const x = tf.tensor3d(step.x.data, [1, ...step.x.shape] as [number, number, number]);
    const y = layer.apply(x) as tf.Tensor;
    expect(y.shape).toEqual([1, ...step.y.shape]);
    expectClose(await y.data(), step.y.data, 1e-4, 'apply y');
    // Two copies of the batch give two copies of the output.
    const x2 = tf.concat([x, x], 0);
    const y2 = layer.apply(x2) as tf.Tensor;
    expectClose(await y2.data(), [...step.y.data, ...step.y.data], 1e-4, 'batched apply y');
    const input = tfl.input({shape: [null, golden.config.hiddenSize]});
    const model = tfl.model({inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor});
    const predicted = model.predict(x) as tf.Tensor;
    expectClose(await predicted.data(), step.y.data, 1e-4, 'tf.model predict');
    [x, y, x2, y2, predicted].forEach((t) => t.dispose());
    model.dispose();
    rope.dispose();
  });

  it('leaves no tensor behind across steps and frees its own on dispose', async () => {
    const start = tf.memory().numTensors;
    const layer = smallLayer();
    await runSchedule(layer, MIXED_SCHEDULE, 17);
    // Steady state: a second run of the same steps (both paths warm) adds no tensor.
    const warm = tf.memory().numTensors;
    await runSchedule(layer, MIXED_SCHEDULE, 17);
    expect(tf.memory().numTensors).toBe(warm);
    layer.rope.dispose();
    layer.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });
});
