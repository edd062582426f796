import * as tf from '@tensorflow/tfjs-core';
import {KVCacheParams, KVCollection, LatentAttentionWithRope, PagedKVCache, RotaryEmbedding} from '../src/index.js';
import {describeEachBackend} from './helpers/backends.js';
import {loadRandomWeights} from './helpers/mla_fixtures.js';

describeEachBackend('PagedKVCache', () => {
  it('is written in place by a step: the storage tensor keeps its identity', async () => {
    const rope = new RotaryEmbedding({dim: 4, nHeads: 2, theta: 10000, maxSeqLen: 32});
    const layer = new LatentAttentionWithRope({
      rope, numAttentionHeads: 2, numKeyValueHeads: 2, hiddenSize: 8,
      kvParams: new KVCacheParams({headDim: 12, pageSize: 2}), kvLoraRank: 8,
      qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 4});
    loadRandomWeights(layer, 1);
    const cache = new PagedKVCache(layer.kvParams, {totalNumPages: 4});
    const storage = cache.storage();
    cache.claim(0);
    for (const count of [3, 1, 1]) {
      const x = tf.ones([count, 8]) as tf.Tensor2D;
      const collection: KVCollection = cache.fetch([0], [count]);
      const y = layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, count]});
      cache.step([0], [count]);
      x.dispose();
      y.dispose();
    }
    // Identity checked without handing the tensor to jasmine, whose message printer would
    // read it synchronously (a stale, blocking read on webgpu).
    expect(cache.storage() === storage).withContext('same storage tensor').toBe(true);
    const rows = await cache.readSequence(0);
    expect(rows.length).toBe(5 * 12);
    expect(rows.some((v) => v !== 0)).toBe(true);
    cache.dispose();
    layer.dispose();
    rope.dispose();
  });
});

describe('LatentAttentionWithRope validation', () => {
  const rope = new RotaryEmbedding({dim: 4, nHeads: 2, theta: 10000, maxSeqLen: 8});
  const make = () => new LatentAttentionWithRope({
    rope, numAttentionHeads: 2, numKeyValueHeads: 2, hiddenSize: 8,
    kvParams: new KVCacheParams({headDim: 12, pageSize: 2}), kvLoraRank: 8,
    qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 4});

  it('rejects bad inputs with an Error naming the argument, the expected and the actual value', () => {
    expect(() => new LatentAttentionWithRope({
      rope, numAttentionHeads: 2, numKeyValueHeads: 2, hiddenSize: 8,
      kvParams: new KVCacheParams({headDim: 13}), kvLoraRank: 8, qkNopeHeadDim: 4, qkRopeHeadDim: 4,
      vHeadDim: 4})).toThrowError(/kvParams.headDim: expected kvLoraRank \+ qkRopeHeadDim = 12, got 13/);
    const layer = make();
    const cache = new PagedKVCache(layer.kvParams, {totalNumPages: 8});
    cache.claim(0);
    // A failed step gives its pages back (rollback), so each attempt fetches anew.
    const fetch = () => cache.fetch([0], [2]);
    const x = tf.zeros([2, 8]) as tf.Tensor2D;
    expect(() => layer.forward(x, {kvCollection: fetch(), inputRowOffsets: [0, 2]}))
        .toThrowError(/weights of layer .* are not loaded: call loadStateDict/);
    expect(cache.pagesOf(0)).toEqual([]);
    loadRandomWeights(layer, 2);
    const bad = tf.zeros([2, 7]) as tf.Tensor2D;
    expect(() => layer.forward(bad, {kvCollection: fetch(), inputRowOffsets: [0, 2]}))
        .toThrowError('forward x: expected shape [T, 8], got [2, 7]');
    expect(() => layer.forward(x, {kvCollection: fetch(), inputRowOffsets: [1, 2]}))
        .toThrowError('inputRowOffsets[0]: expected 0, got 1');
    expect(() => layer.forward(x, {kvCollection: fetch(), inputRowOffsets: [0, 1, 2]}))
        .toThrowError(/inputRowOffsets: expected 2 entries \(batch of 1 \+ 1\), got 3/);
    expect(() => layer.forward(x, {kvCollection: fetch(), inputRowOffsets: [0, 2], layerIdx: 1}))
        .toThrowError(/forward layerIdx: expected an integer in \[0, 0\], got 1/);
    const weights = layer.stateDict();
    const wrong = {...weights, 'o_proj.weight': tf.zeros([8, 9])};
    expect(() => layer.loadStateDict(wrong))
        .toThrowError("loadStateDict: weight 'o_proj.weight' has shape [8, 9], expected [8, 8]");
    const {['kv_b_proj.weight']: _dropped, ...missing} = weights;
    void _dropped;
    expect(() => layer.loadStateDict(missing)).toThrowError(/missing weight 'kv_b_proj.weight' of shape \[16, 8\]/);
    expect(() => layer.loadStateDict({...weights, extra: tf.zeros([1])})).toThrowError(/unexpected weight 'extra'/);
    // Past the rope table: 2 + 7 positions > maxSeqLen 8.
    const collection = fetch();
    layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 2]}).dispose();
    cache.step([0], [2]);
    const long = tf.zeros([7, 8]) as tf.Tensor2D;
    const next = cache.fetch([0], [7]);
    expect(() => layer.forward(long, {kvCollection: next, inputRowOffsets: [0, 7]}))
        .toThrowError(/sequence 0 would reach position 8, past the rope's maxSeqLen 8/);
    // A collection from before a step: its step is over (and, unused, it is stale).
    expect(() => layer.forward(x, {kvCollection: collection, inputRowOffsets: [0, 2]}))
        .toThrowError(/kvCollection: its step is over \(cache.step, rollback or release ran\)/);
    const unused = cache.fetch([0], [1]);
    cache.step([0], [1]);
    const one = tf.zeros([1, 8]) as tf.Tensor2D;
    expect(() => layer.forward(one, {kvCollection: unused, inputRowOffsets: [0, 1]}))
        .toThrowError(/stale for sequence 0: fetched at length 2, the cache now has 3 tokens/);
    one.dispose();
    [x, bad, long, wrong['o_proj.weight'], ...Object.values(weights)].forEach((t) => t.dispose());
    cache.dispose();
    layer.dispose();
  });
});
