import * as tf from '@tensorflow/tfjs-core';
import {encodeSafetensors, LatentAttentionWithRope, loadSafetensors, PagedKVCache} from '../src/index.js';
import {describeEachBackend} from './helpers/backends.js';
import {expectGoldenSteps, GOLDEN_CASES, layerArgsOf, ropeOf} from './helpers/mla_fixtures.js';

// The host-only safetensors specs (parsing, validation, encoding, file paths) run in the Node
// lane: test/node/safetensors.spec.ts.

function disposeAll(tensors: Record<string, tf.Tensor>): void {
  Object.values(tensors).forEach((t) => t.dispose());
}

describe('safetensors: in a browser', () => {
  it('a string source is a file path: an Error in a browser', async () => {
    await expectAsync(loadSafetensors('model.safetensors')).toBeRejectedWithError(
        /only supported in Node.*got 'model\.safetensors'/s);
  });
});

// A golden layer whose weights come from a safetensors file (F32, HF names under a layer prefix).
describeEachBackend('safetensors: golden layer from a file', () => {
  const golden = GOLDEN_CASES.find((g) => g.name === 'tiny_yarn_qlora')!;
  const prefix = 'model.layers.0.self_attn.';

  it(`${golden.name}: loadSafetensors + loadStateDict reproduce the golden outputs`, async () => {
    const tensorsAtStart = tf.memory().numTensors;
    const entries: Record<string, {dtype: 'F32', shape: number[], data: number[]}> = {};
    for (const [name, w] of Object.entries(golden.weights)) {
      entries[prefix + name] = {dtype: 'F32', shape: w.shape, data: w.data};
    }
    // Other layers' tensors in the same file must be left out by the prefix.
    entries['model.layers.0.mlp.down_proj.weight'] = {dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4]};
    entries['model.layers.0.self_attn_extra.weight'] = {dtype: 'F32', shape: [1], data: [0]};
    const file = encodeSafetensors(entries, {format: 'pt'});

    const weights = await loadSafetensors(file, {prefix});
    expect(Object.keys(weights).sort()).toEqual(Object.keys(golden.weights).sort());
    const rope = ropeOf(golden.config);
    const layer = new LatentAttentionWithRope(layerArgsOf(golden.config, rope, 16));
    layer.loadStateDict(weights);
    disposeAll(weights);
    expect(layer.scale).toBeCloseTo(golden.softmaxScale, 12);

    const cache = new PagedKVCache(layer.kvParams, {totalNumPages: 64});
    await expectGoldenSteps(layer, golden, cache);
    cache.dispose();
    layer.dispose();
    rope.dispose();
    expect(tf.memory().numTensors).withContext('numTensors after dispose').toBe(tensorsAtStart);
  });
});
