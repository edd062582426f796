import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {describeEachBackend, expectClose} from './helpers/backends.js';
import {expectGoldenSteps, GOLDEN_CASES, goldenLayer, ropeOf, seededRandom} from './helpers/mla_fixtures.js';

/**
 * 16-bit weights (LatentAttentionWithRope dtype 'bfloat16' / 'float16': projections and the
 * absorbed W_UK / W_UV packed two per int32 word) with every cache dtype, against the float64
 * oracle. Bounds as max error over max(1, max|y|): ≤ 5e-2 with the FP8 cache, else ≤ 1e-2 when
 * anything is bfloat16 (8 mantissa bits; measured ≈ 3e-3 weights only, ≈ 5e-3 with a bf16
 * cache too), ≤ 2e-3 with float16 only (11 bits; measured ≈ 4e-4).
 */

type Dtype = 'float32'|'bfloat16'|'float16';
const DTYPES: Dtype[] = ['float32', 'bfloat16', 'float16'];
const CACHE_DTYPES: mla.KVCacheDtype[] = [...DTYPES, 'float8_e4m3fn'];

function bound(weights: Dtype, cache: mla.KVCacheDtype): number {
  if (cache === 'float8_e4m3fn') return 5e-2;  // the FP8 cache's bound (see cache_dtypes.spec.ts)
  if (weights === 'bfloat16' || cache === 'bfloat16') return 1e-2;
  if (weights === 'float16' || cache === 'float16') return 2e-3;
  return 1e-4;
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

describeEachBackend('16-bit weights: golden vectors, every dtype combination', () => {
  for (const golden of GOLDEN_CASES) {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      for (const cacheDtype of CACHE_DTYPES) {
        it(`${golden.name}: weights ${dtype}, cache ${cacheDtype}, prefill and decode paths: ≤ ${bound(dtype, cacheDtype)}`, async () => {
          const tensorsAtStart = tf.memory().numTensors;
          for (const graphMode of ['prefill', 'decode'] as const) {
            const rope = ropeOf(golden.config);
            const width = golden.config.kvLoraRank + golden.config.qkRopeHeadDim;
            const kvParams = new mla.KVCacheParams({headDim: width, pageSize: 16, dtype: cacheDtype,
                                                    qkRopeHeadDim: golden.config.qkRopeHeadDim});
            const layer = goldenLayer(golden, rope, 16, {graphMode, kvParams, dtype});
            const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 64});
            await expectGoldenSteps(layer, golden, cache, bound(dtype, cacheDtype));
            cache.dispose();
            layer.dispose();
            rope.dispose();
          }
          expect(tf.memory().numTensors).withContext('numTensors after dispose').toBe(tensorsAtStart);
        }, 60000);
      }
    }
  }
});

describe('16-bit weights: webgpu equals cpu', () => {
  let originalBackend: string;
  beforeAll(() => {
    originalBackend = tf.getBackend();
  });
  afterAll(async () => {
    await tf.setBackend(originalBackend);
  });

  async function run(dtype: Dtype, cacheDtype: mla.KVCacheDtype, qLoraRank: number|null): Promise<Float32Array[]> {
    const random = seededRandom(21);
    const rope = new mla.RotaryEmbedding({dim: 8, nHeads: 4, theta: 10000, maxSeqLen: 64});
    const kvParams = new mla.KVCacheParams({headDim: 32 + 8, pageSize: 4, dtype: cacheDtype, qkRopeHeadDim: 8});
    const layer = new mla.LatentAttentionWithRope({rope, numAttentionHeads: 4, numKeyValueHeads: 4,
                                                   hiddenSize: 48, kvParams, qLoraRank, kvLoraRank: 32,
                                                   qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16, dtype});
    const weights: Record<string, tf.Tensor> = {};
    for (const [name, shape] of layer.expectedWeightShapes()) {
      const scale = name.endsWith('layernorm.weight') ? 0.2 : 1 / Math.sqrt(shape[shape.length - 1]);
      weights[name] = tf.tensor(Array.from({length: shape.reduce((a, b) => a * b, 1)},
                                           () => (name.endsWith('layernorm.weight') ? 1 : 0) + random(scale)), shape);
    }
    layer.loadStateDict(weights);
    Object.values(weights).forEach((w) => w.dispose());
    const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 32});
    cache.claim(0);
    cache.claim(1);
    const outputs: Float32Array[] = [];
    for (const counts of [[11, 5], [1, 1], [2, 1]]) {
      const total = counts[0] + counts[1];
      const x = tf.tensor2d(Array.from({length: total * 48}, () => random(1)), [total, 48]);
      const y = layer.forward(x, {kvCollection: cache.fetch([0, 1], counts), inputRowOffsets: [0, counts[0], total]});
      cache.step([0, 1], counts);
      outputs.push(await y.data() as Float32Array);
      tf.dispose([x, y]);
    }
    cache.dispose();
    layer.dispose();
    rope.dispose();
    return outputs;
  }

  for (const [dtype, cacheDtype, qLoraRank] of [['bfloat16', 'bfloat16', null], ['float16', 'float32', 24],
                                                 ['bfloat16', 'float16', 24],
                                                 ['bfloat16', 'float8_e4m3fn', null]] as Array<[Dtype, mla.KVCacheDtype, number|null]>) {
    it(`weights ${dtype}, cache ${cacheDtype}${qLoraRank === null ? '' : ', q-LoRA'}: outputs within 1e-4·max(1, max|y|)`, async () => {
      await tf.setBackend('cpu');
      const cpu = await run(dtype, cacheDtype, qLoraRank);
      if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend is not available');
      const gpu = await run(dtype, cacheDtype, qLoraRank);
      // FP8: WGSL's division need not round exactly, so a code may differ by one step.
      const relative = cacheDtype === 'float8_e4m3fn' ? 1e-2 : 1e-4;
      cpu.forEach((expected, i) => {
        expectClose(gpu[i], expected, relative * Math.max(1, maxAbs(expected)), `${dtype}/${cacheDtype} step ${i}`);
      });
    }, 120000);
  }
});

describeEachBackend('16-bit weights: storage, round trips, errors', (backend) => {
  function smallLayer(dtype: Dtype, extra: Partial<mla.LatentAttentionWithRopeArgs> = {}) {
    const rope = new mla.RotaryEmbedding({dim: 4, nHeads: 2, theta: 10000, maxSeqLen: 16});
    const kvParams = new mla.KVCacheParams({headDim: 8 + 4, pageSize: 4});
    const layer = new mla.LatentAttentionWithRope({rope, numAttentionHeads: 2, numKeyValueHeads: 2,
                                                   hiddenSize: 12, kvParams, kvLoraRank: 8, qkNopeHeadDim: 4,
                                                   qkRopeHeadDim: 4, vHeadDim: 4, dtype, ...extra});
    return {rope, layer};
  }

  it('stateDict returns float32 holding the stored values exactly; loading it back changes nothing', async () => {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const {rope, layer} = smallLayer(dtype);
      const random = seededRandom(2);
      const weights: Record<string, tf.Tensor> = {};
      for (const [name, shape] of layer.expectedWeightShapes()) {
        weights[name] = tf.tensor(Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => random(1)), shape);
      }
      layer.loadStateDict(weights);
      const first = layer.stateDict();
      for (const [name, tensor] of Object.entries(first)) {
        expect(tensor.dtype).toBe('float32');
        const values = await tensor.data();
        const original = await weights[name].data();
        values.forEach((v, i) => {
          if (v !== mla.roundToHalf(original[i], dtype)) fail(`${backend} ${dtype} ${name}[${i}]: ${v} is not ${original[i]} rounded`);
        });
      }
      layer.loadStateDict(first);
      const second = layer.stateDict();
      for (const name of Object.keys(first)) {
        expect(Array.from(await second[name].data())).withContext(`${backend} ${dtype} ${name}`)
            .toEqual(Array.from(await first[name].data()));
      }
      tf.dispose([...Object.values(weights), ...Object.values(first), ...Object.values(second)]);
      layer.dispose();
      rope.dispose();
    }
  });

  it('gradients through a 16-bit layer get an Error saying it is inference-only', () => {
    const {rope, layer} = smallLayer('bfloat16');
    const x = tf.randomNormal([1, 3, 12]);
    layer.apply(x);  // builds the layer; inference works
    expect(() => tf.grad((input: tf.Tensor) => tf.sum(layer.apply(input) as tf.Tensor))(x))
        .toThrowError(/16-bit weights .* are inference-only/);
    x.dispose();
    layer.dispose();
    rope.dispose();
  });

  it('refuses unknown dtype names and odd packed sizes, naming the argument', () => {
    expect(() => smallLayer('int8' as Dtype)).toThrowError(/LatentAttentionWithRope dtype: expected 'float32', 'bfloat16' or 'float16', got 'int8'/);
    expect(() => smallLayer('float32', {oProjDtype: 'float64' as Dtype}))
        .toThrowError(/LatentAttentionWithRope oProjDtype: expected/);
    expect(() => smallLayer('bfloat16', {hiddenSize: 11}))
        .toThrowError(/LatentAttentionWithRope hiddenSize: expected an even size with bfloat16 weights/);
  });

  it('serializes its dtypes (getConfig / fromConfig)', () => {
    const {rope, layer} = smallLayer('float16', {oProjDtype: 'bfloat16', normDtype: 'float32'});
    const config = layer.getConfig();
    const copy = mla.LatentAttentionWithRope.fromConfig(
        mla.LatentAttentionWithRope as unknown as tf.serialization.SerializableConstructor<mla.LatentAttentionWithRope>, config);
    expect([copy.weightDtype, copy.oProjDtype, copy.normDtype]).toEqual(['float16', 'bfloat16', 'float32']);
    layer.dispose();
    copy.dispose();
    rope.dispose();
  });
});

describe('16-bit weights: bytes of a DeepSeek-V2-Lite-shaped layer [cpu]', () => {
  let originalBackend: string;
  beforeAll(async () => {
    originalBackend = tf.getBackend();
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend(originalBackend);
  });

  it('weights and derived weights in bf16 and f16 hold ≤ 0.55× the float32 twin\'s bytes', () => {
    const bytes: Record<string, number> = {};
    for (const dtype of DTYPES) {
      const rope = new mla.RotaryEmbedding({dim: 64, nHeads: 16, theta: 10000, maxSeqLen: 8});
      void rope.freqsCis;
      const kvParams = new mla.KVCacheParams({headDim: 576, pageSize: 4});
      const before = tf.memory().numBytes;
      const layer = new mla.LatentAttentionWithRope({rope, numAttentionHeads: 16, numKeyValueHeads: 16,
                                                     hiddenSize: 2048, kvParams, dtype});
      const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 1});
      const cacheBytes = tf.memory().numBytes - before;
      const weights: Record<string, tf.Tensor> = {};
      for (const [name, shape] of layer.expectedWeightShapes()) weights[name] = tf.zeros(shape);
      layer.loadStateDict(weights);
      Object.values(weights).forEach((w) => w.dispose());
      cache.claim(0);
      const x = tf.zeros([1, 2048]) as tf.Tensor2D;
      const y = layer.forward(x, {kvCollection: cache.fetch([0], [1]), inputRowOffsets: [0, 1]});
      cache.step([0], [1]);
      tf.dispose([x, y]);
      // The weights and the absorbed W_UK / W_UV the decode step made.
      bytes[dtype] = tf.memory().numBytes - before - cacheBytes;
      cache.dispose();
      layer.dispose();
      rope.dispose();
    }
    expect(bytes.float32).toBeGreaterThan(60e6);
    for (const dtype of ['bfloat16', 'float16']) {
      expect(bytes[dtype] / bytes.float32).withContext(`${dtype}: ${bytes[dtype]} of ${bytes.float32} bytes`)
          .toBeLessThanOrEqual(0.55);
    }
  }, 120000);
});
