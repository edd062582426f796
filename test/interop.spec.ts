import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {DeepseekYarnRotaryEmbedding, KVCacheParams, LatentAttentionWithRope, mlaPrefill} from '../src/index.js';
import {mlaPrefillComposite} from '../src/ops/differentiable.js';
import {describeEachBackend, expectClose} from './helpers/backends.js';
import {loadRandomWeights, randomTensor, seededRandom} from './helpers/mla_fixtures.js';

function tinyLayer(bufferSize = 16384): LatentAttentionWithRope {
  const rope = new DeepseekYarnRotaryEmbedding({dim: 4, nHeads: 2, theta: 10000, maxSeqLen: 16,
    scalingParams: {scalingFactor: 4, originalMaxPositionEmbeddings: 4, betaFast: 32, betaSlow: 1,
                    mscale: 0.707, mscaleAllDim: 0.707}});
  const layer = new LatentAttentionWithRope({
    rope, numAttentionHeads: 2, numKeyValueHeads: 2, hiddenSize: 6, qLoraRank: 5, bufferSize,
    kvParams: new KVCacheParams({headDim: 8 + 4, pageSize: 4}), kvLoraRank: 8,
    qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 3});
  loadRandomWeights(layer, 21);
  return layer;
}

describeEachBackend('gradients', (backend) => {
  it('MLAPrefill has a registered gradient equal to autodiff of the same attention in tfjs ops', async () => {
    const random = seededRandom(5);
    const [T, H, N, R, V, L] = [5, 2, 3, 4, 3, 6];
    const q = randomTensor(random, [T, H, N + R]) as tf.Tensor3D;
    const kvBuffer = randomTensor(random, [7, H, N + V]) as tf.Tensor3D;
    const cache = randomTensor(random, [6, 2, L + R]) as tf.Tensor3D;
    const lookup = tf.tensor2d([[0, 1, 2], [3, 4, 5]], [2, 3], 'int32');
    // Sequence 0 (buffer rows 0..4) has new tokens at positions 2..4; sequence 1 (rows 5..6) at 0..1.
    const tokenInfo = tf.tensor2d([[0, 2, 4], [0, 3, 5], [0, 4, 6], [1, 0, 12], [1, 1, 13]], [5, 3], 'int32');
    const chunkInfo = tf.tensor2d([[0, 0, 5], [5, 0, 2]], [2, 3], 'int32');
    const attrs = {scale: 0.7, qkNopeHeadDim: N};
    const outputWeights = randomTensor(random, [T, H, V + 1]);
    const viaKernel = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(mlaPrefill(
        a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, lookup, tokenInfo, chunkInfo, attrs), outputWeights)));
    const viaOps = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(mlaPrefillComposite(
        a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, lookup, tokenInfo, chunkInfo, attrs), outputWeights)));
    const kernelGrads = viaKernel([q, kvBuffer, cache]);
    const opsGrads = viaOps([q, kvBuffer, cache]);
    for (const [i, name] of ['q', 'kvBuffer', 'cache'].entries()) {
      expectClose(await kernelGrads[i].data(), await opsGrads[i].data(), 1e-5, `d/d${name}`);
    }
    tf.dispose([q, kvBuffer, cache, lookup, tokenInfo, chunkInfo, outputWeights, ...kernelGrads, ...opsGrads]);
  });

  it('gradients of the layer (no-cache path) agree with finite differences, chunked or not', async () => {
    // Many forward passes: on slow software WebGPU the next spec checks this backend against cpu.
    if (backend !== 'cpu') return;
    for (const bufferSize of [3, 64]) {
      const layer = tinyLayer(bufferSize);
      const x = randomTensor(seededRandom(8), [2, 4, 6]);
      const outputWeights = randomTensor(seededRandom(9), [2, 4, 6]);
      const loss = () => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, outputWeights)) as tf.Scalar;
      const {value, grads} = tf.variableGrads(loss);
      value.dispose();
      for (const variable of layer.trainableWeights) {
        const analytic = await grads[(variable.read() as tf.Variable).name].data();
        const original = (await variable.read().data()).slice();
        const largest = Math.max(...Array.from(analytic, Math.abs));
        for (const index of [0, Math.floor(original.length / 2), original.length - 1]) {
          const eps = 1e-2;
          const lossAt = async (delta: number) => {
            const perturbed = original.slice();
            perturbed[index] += delta;
            const w = tf.tensor(perturbed, variable.shape as number[]);
            variable.write(w);
            w.dispose();
            const l = loss();
            const v = (await l.data())[0];
            l.dispose();
            return v;
          };
          const numeric = (await lossAt(eps) - await lossAt(-eps)) / (2 * eps);
          const restored = tf.tensor(original, variable.shape as number[]);
          variable.write(restored);
          restored.dispose();
          const relative = Math.abs(numeric - analytic[index]) /
              Math.max(Math.abs(numeric), Math.abs(analytic[index]), 1e-2 * largest);
          expect(relative).withContext(`${variable.name}[${index}]: numeric ${numeric}, ` +
                                       `analytic ${analytic[index]} (bufferSize ${bufferSize})`).toBeLessThan(1e-2);
        }
      }
      tf.dispose([x, outputWeights, ...Object.values(grads)]);
      layer.rope.dispose();
      layer.dispose();
    }
  });

  it('gradients of the layer equal the cpu backend\'s, chunked or not', async () => {
    const gradientsOn = async (backendName: string, bufferSize: number) => {
      const previous = tf.getBackend();
      await tf.setBackend(backendName);
      const layer = tinyLayer(bufferSize);
      const x = randomTensor(seededRandom(8), [2, 4, 6]);
      const outputWeights = randomTensor(seededRandom(9), [2, 4, 6]);
      const {value, grads} = tf.variableGrads(
          () => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, outputWeights)) as tf.Scalar);
      const byWeight = await Promise.all(layer.trainableWeights.map(
          (v) => grads[(v.read() as tf.Variable).name].data()));
      tf.dispose([x, outputWeights, value, ...Object.values(grads)]);
      layer.rope.dispose();
      layer.dispose();
      await tf.setBackend(previous);
      return byWeight;
    };
    for (const bufferSize of [3, 64]) {
      const here = await gradientsOn(backend, bufferSize);
      const reference = await gradientsOn('cpu', bufferSize);
      here.forEach((g, i) => {
        const largest = Math.max(1e-3, ...Array.from(reference[i], Math.abs));
        expectClose(g, reference[i], 1e-4 * largest, `gradient ${i} (bufferSize ${bufferSize})`);
      });
    }
  });

  it('model.fit trains through the layer', async () => {
    const layer = tinyLayer();
    const model = tfl.sequential({layers: [tfl.layers.inputLayer({inputShape: [4, 6]}), layer]});
    model.compile({optimizer: tf.train.adam(0.01), loss: 'meanSquaredError'});
    const x = randomTensor(seededRandom(10), [3, 4, 6]);
    const y = randomTensor(seededRandom(11), [3, 4, 6], 0.1);
    const history = await model.fit(x, y, {epochs: 8, verbose: 0});
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    tf.dispose([x, y]);
    layer.rope.dispose();
    model.dispose();
  });
});

describeEachBackend('serialization', () => {
  it('a tf.model with the layer round-trips through save / loadLayersModel with identical predictions', async () => {
    const layer = tinyLayer();
    const input = tfl.input({shape: [null, 6]});
    const model = tfl.model({inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor});
    let artifacts: tf.io.ModelArtifacts|null = null;
    await model.save(tf.io.withSaveHandler(async (saved) => {
      artifacts = saved;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const savedArtifacts = artifacts as unknown as tf.io.ModelArtifacts;
    const names = savedArtifacts.weightSpecs!.map((spec) => spec.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.map((n) => n.split('/').pop())).toEqual(
        ['q_a_proj.weight', 'q_a_layernorm.weight', 'q_b_proj.weight', 'kv_a_proj_with_mqa.weight',
         'kv_a_layernorm.weight', 'kv_b_proj.weight', 'o_proj.weight']);
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(savedArtifacts));
    const restored = loaded.layers[1] as LatentAttentionWithRope;
    expect(restored instanceof LatentAttentionWithRope).toBe(true);
    expect(restored.scale).toBe(layer.scale);
    expect(restored.rope.constructor).toBe(layer.rope.constructor);
    expect(restored.qLoraRank).toBe(5);
    const x = randomTensor(seededRandom(12), [2, 5, 6]);
    const before = model.predict(x) as tf.Tensor;
    const after = loaded.predict(x) as tf.Tensor;
    expectClose(await after.data(), await before.data(), 0, 'predictions after load');
    tf.dispose([x, before, after]);
    layer.rope.dispose();
    restored.rope.dispose();
    model.dispose();
    loaded.dispose();
  });
});
