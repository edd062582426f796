import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {describeEachBackend, expectClose} from './helpers/backends.js';
import {expectGoldenSteps, GOLDEN_CASES, goldenLayer, ropeOf, seededRandom} from './helpers/mla_fixtures.js';

/**
 * Reduced-precision latent caches: KVCacheParams dtype 'bfloat16' / 'float16' (rows rounded to
 * nearest-even and packed two per int32 word) and 'float8_e4m3fn' (FlashMLA's layout: c_kv as
 * e4m3 codes with a float32 scale per 128 values, k_pe as bf16); every kernel widens on read.
 *
 * Bounds against the float64 oracle (which stores float64 rows), as max error over
 * max(1, max|y|): bf16 ≤ 1e-2 (8 mantissa bits: measured ≈ 2e-3), f16 ≤ 2e-3 (11 bits: ≈ 2e-4).
 * The stored rows are within one rounding of the oracle's rows: 2^-8 (bf16) or 2^-11 (f16)
 * relative, plus the float32 computation's 1e-4.
 */

const HALF_BOUNDS: Record<mla.HalfDtype|'float8_e4m3fn', {output: number, row: number}> = {
  bfloat16: {output: 1e-2, row: 2 ** -8 + 1e-4},
  float16: {output: 2e-3, row: 2 ** -11 + 1e-4},
  // e4m3 keeps 3 mantissa bits (2^-4 relative) of values scaled by their block's max / 448;
  // measured ≈ 3e-2 on the outputs.
  float8_e4m3fn: {output: 5e-2, row: 2 ** -4 + 1e-4},
};
const CACHE_DTYPES = [...mla.HALF_DTYPES, 'float8_e4m3fn'] as const;

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

describeEachBackend('16-bit latent cache: golden vectors', (backend) => {
  for (const golden of GOLDEN_CASES) {
    for (const cacheDtype of CACHE_DTYPES) {
      for (const graphMode of ['prefill', 'decode'] as const) {
        it(`${golden.name}, ${cacheDtype} cache, graphMode ${graphMode}: within the stated bounds of the oracle`, async () => {
          const tensorsAtStart = tf.memory().numTensors;
          const rope = ropeOf(golden.config);
          const {kvLoraRank, qkRopeHeadDim} = golden.config;
          const width = kvLoraRank + qkRopeHeadDim;
          const kvParams = new mla.KVCacheParams({headDim: width, pageSize: 16, dtype: cacheDtype,
                                                  qkRopeHeadDim});
          const layer = goldenLayer(golden, rope, 16, {graphMode, kvParams});
          const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 64});
          await expectGoldenSteps(layer, golden, cache, HALF_BOUNDS[cacheDtype].output);
          for (const [seqId, expected] of Object.entries(golden.finalCache)) {
            const rows = await cache.readSequence(Number(seqId));
            const length = expected.latent.shape[0];
            const latent = new Float32Array(length * kvLoraRank);
            const kRope = new Float32Array(length * qkRopeHeadDim);
            for (let k = 0; k < length; k++) {
              latent.set(rows.subarray(k * width, k * width + kvLoraRank), k * kvLoraRank);
              kRope.set(rows.subarray(k * width + kvLoraRank, (k + 1) * width), k * qkRopeHeadDim);
              // Every stored value is a 16-bit value exactly (FP8: k_pe is bf16).
              const half = cacheDtype === 'float8_e4m3fn' ? 'bfloat16' : cacheDtype;
              for (let c = cacheDtype === 'float8_e4m3fn' ? kvLoraRank : 0; c < width; c++) {
                const v = rows[k * width + c];
                if (mla.roundToHalf(v, half) !== v) fail(`${backend}: row ${k} value ${c} = ${v} is not a ${half}`);
              }
            }
            const bound = HALF_BOUNDS[cacheDtype].row;
            expectClose(latent, expected.latent.data, bound * Math.max(1, maxAbs(expected.latent.data)),
                        `${backend} ${cacheDtype} cache latent of sequence ${seqId}`);
            expectClose(kRope, expected.kRope.data, bound * Math.max(1, maxAbs(expected.kRope.data)),
                        `${backend} ${cacheDtype} cache kRope of sequence ${seqId}`);
          }
          cache.dispose();
          layer.dispose();
          rope.dispose();
          expect(tf.memory().numTensors).withContext('numTensors after dispose').toBe(tensorsAtStart);
        }, 60000);
      }
    }
  }
});

/** Runs a golden case's steps with a cache of `cacheDtype` and returns the outputs and rows. */
async function runCase(cacheDtype: mla.KVCacheDtype, graphMode: mla.GraphMode):
    Promise<{outputs: Float32Array[], rows: Float32Array[]}> {
  const golden = GOLDEN_CASES[GOLDEN_CASES.length - 1];
  const rope = ropeOf(golden.config);
  const width = golden.config.kvLoraRank + golden.config.qkRopeHeadDim;
  const kvParams = new mla.KVCacheParams({headDim: width, pageSize: 3, dtype: cacheDtype,
                                          qkRopeHeadDim: golden.config.qkRopeHeadDim});
  const layer = goldenLayer(golden, rope, 3, {graphMode, kvParams});
  const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 128});
  const outputs: Float32Array[] = [];
  for (const step of golden.steps) {
    for (const seqId of step.seqIds) if (!cache.contains(seqId)) cache.claim(seqId);
    const counts = step.seqIds.map((_, b) => step.inputRowOffsets[b + 1] - step.inputRowOffsets[b]);
    const collection = cache.fetch(step.seqIds, counts);
    const x = tf.tensor2d(step.x.data, step.x.shape as [number, number]);
    const y = layer.forward(x, {kvCollection: collection, inputRowOffsets: step.inputRowOffsets});
    cache.step(step.seqIds, counts);
    outputs.push(await y.data() as Float32Array);
    tf.dispose([x, y]);
  }
  const rows: Float32Array[] = [];
  for (const seqId of Object.keys(golden.finalCache)) rows.push(await cache.readSequence(Number(seqId)));
  cache.dispose();
  layer.dispose();
  rope.dispose();
  return {outputs, rows};
}

describe('16-bit latent cache: webgpu equals cpu', () => {
  let originalBackend: string;
  beforeAll(() => {
    originalBackend = tf.getBackend();
  });
  afterAll(async () => {
    await tf.setBackend(originalBackend);
  });
  for (const cacheDtype of CACHE_DTYPES) {
    for (const graphMode of ['prefill', 'decode'] as const) {
      it(`${cacheDtype}, ${graphMode}: outputs within 1e-4·max(1, max|y|), rows within one ${cacheDtype} rounding`, async () => {
        await tf.setBackend('cpu');
        const cpu = await runCase(cacheDtype, graphMode);
        if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend is not available');
        const gpu = await runCase(cacheDtype, graphMode);
        cpu.outputs.forEach((expected, i) => {
          expectClose(gpu.outputs[i], expected, 1e-4 * Math.max(1, maxAbs(expected)), `${cacheDtype} step ${i}`);
        });
        // Both round the float32 row to nearest-even; their float32 rows may differ in the last
        // bits (float64 vs float32 arithmetic), so a tie may round apart: at most one step.
        // (FP8: WGSL's division need not round exactly, so a code may differ by one step too.)
        const ulp = cacheDtype === 'bfloat16' ? 2 ** -7 : cacheDtype === 'float16' ? 2 ** -10 : 2 ** -3;
        cpu.rows.forEach((expected, i) => {
          expectClose(gpu.rows[i], expected, ulp * Math.max(1, maxAbs(expected)), `${cacheDtype} rows of sequence ${i}`);
        });
      }, 120000);
    }
  }
});

describeEachBackend('16-bit latent cache: bytes, errors, NaN', (backend) => {
  it('FP8 rows: 656 bytes per token and layer at 512 + 64; an all-zero row reads back as zeros', async () => {
    const params = new mla.KVCacheParams({headDim: 576, pageSize: 16, dtype: 'float8_e4m3fn'});
    expect(params.bytesPerToken).toBe(656);
    // A zero c_kv row: every block's scale is 0, which must give zeros, not 0 / 0.
    const rope = new mla.RotaryEmbedding({dim: 4, nHeads: 1, theta: 10000, maxSeqLen: 8});
    const small = new mla.KVCacheParams({headDim: 8 + 4, pageSize: 2, dtype: 'float8_e4m3fn', qkRopeHeadDim: 4});
    const cache = new mla.PagedKVCache(small, {totalNumPages: 2});
    const q = tf.zeros([1, 1, 6]) as tf.Tensor3D;
    const kv = tf.zeros([1, 12]) as tf.Tensor2D;
    const gamma = tf.ones([8]) as tf.Tensor1D;
    const tokenInfo = tf.tensor2d([0, 0, 1], [1, 3], 'int32');
    cache.claim(0);
    cache.fetch([0], [2]);
    const out = mla.fusedRope(q, kv, gamma, rope.freqsCis, tokenInfo, cache.storage(0),
                              {eps: 1e-6, interleaved: true, cacheDtype: 'float8_e4m3fn'});
    cache.step([0], [2]);
    const rows = await cache.readSequence(0);
    expect(Array.from(rows)).withContext(`${backend} rows`).toEqual(new Array(24).fill(0));
    tf.dispose([q, kv, gamma, tokenInfo, out]);
    cache.dispose();
    rope.dispose();
  });

  it('holds half the bytes: 1,152 bytes per token and layer at kvLoraRank 512 + rope 64', () => {
    for (const dtype of mla.HALF_DTYPES) {
      const params = new mla.KVCacheParams({headDim: 576, pageSize: 16, numLayers: 2, dtype});
      expect(params.bytesPerToken).toBe(1152);
      const before = tf.memory().numBytes;
      const cache = new mla.PagedKVCache(params, {totalNumPages: 4});
      expect(tf.memory().numBytes - before).withContext(`${backend} ${dtype} numBytes`).toBe(2 * 4 * 16 * 1152);
      cache.dispose();
    }
    expect(new mla.KVCacheParams({headDim: 576}).bytesPerToken).toBe(2304);
  });

  it('refuses unknown dtypes, fp8 (not yet) and odd rows with an Error naming the argument', () => {
    expect(() => new mla.KVCacheParams({headDim: 8, dtype: 'int8' as mla.KVCacheDtype}))
        .toThrowError(/KVCacheParams dtype: expected 'float32', 'bfloat16', 'float16' or 'float8_e4m3fn', got 'int8'/);
    expect(() => new mla.KVCacheParams({headDim: 8, dtype: 'float8_e4m3fn'}))
        .toThrowError(/KVCacheParams qkRopeHeadDim: expected an integer in \[2, 4\], got 64/);
    expect(() => new mla.KVCacheParams({headDim: 14, dtype: 'float8_e4m3fn', qkRopeHeadDim: 4}))
        .toThrowError(/the float8_e4m3fn layout needs c_kv = headDim − qkRopeHeadDim a multiple of 4/);
    expect(() => new mla.KVCacheParams({headDim: 7, dtype: 'bfloat16'}))
        .toThrowError(/KVCacheParams headDim: expected an even width with dtype 'bfloat16'/);
    const packed = tf.zeros([2, 4, 5], 'int32') as tf.Tensor3D;
    const q = tf.zeros([1, 2, 12]) as tf.Tensor3D;
    const lookup = tf.zeros([1, 2], 'int32') as tf.Tensor2D;
    const tokenInfo = tf.zeros([1, 3], 'int32') as tf.Tensor2D;
    expect(() => mla.mlaDecode(q, packed, lookup, tokenInfo, {scale: 1, kvLoraRank: 8, maxContextLength: 1,
                                                              cacheDtype: 'bfloat16'}))
        .toThrowError(/mlaDecode cache \(bfloat16, packed two values per int32\): expected shape \[\?, \?, 6\], got \[2, 4, 5\]/);
    tf.dispose([packed, q, lookup, tokenInfo]);
  });

  it('a NaN in one sequence\'s input stays in that sequence (outputs and cache rows)', async () => {
    // Counted after everything is disposed (the rope table and the absorbed weights are made at
    // the first step, owned by the rope and the layer).
    const tensorsAtStart = tf.memory().numTensors;
    const random = seededRandom(4);
    const rope = new mla.RotaryEmbedding({dim: 4, nHeads: 2, theta: 10000, maxSeqLen: 32});
    const kvParams = new mla.KVCacheParams({headDim: 8 + 4, pageSize: 2, dtype: 'bfloat16'});
    const layer = new mla.LatentAttentionWithRope({rope, numAttentionHeads: 2, numKeyValueHeads: 2,
                                                   hiddenSize: 16, kvParams, kvLoraRank: 8,
                                                   qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 4});
    const weights: Record<string, tf.Tensor> = {};
    for (const [name, shape] of layer.expectedWeightShapes()) {
      weights[name] = tf.tensor(Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => random(0.5)), shape);
    }
    layer.loadStateDict(weights);
    Object.values(weights).forEach((w) => w.dispose());
    const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 16});
    {
      cache.claim(0);
      cache.claim(1);
      for (const counts of [[3, 2], [1, 1]]) {
        const total = counts[0] + counts[1];
        const values = Array.from({length: total * 16}, () => random(1));
        if (counts[0] === 3) values[16 + 5] = NaN;  // token 1 of sequence 0
        const x = tf.tensor2d(values, [total, 16]);
        const y = layer.forward(x, {kvCollection: cache.fetch([0, 1], counts), inputRowOffsets: [0, counts[0], total]});
        cache.step([0, 1], counts);
        const out = await y.data();
        const ofSeq1 = out.subarray(counts[0] * 16);
        expect(ofSeq1.every(Number.isFinite)).withContext(`${backend}: sequence 1's outputs`).toBe(true);
        // The NaN token's output (step 1), then sequence 0's next token, which attends to it.
        expect(out.subarray(16, 32).some(Number.isNaN)).withContext(`${backend}: the NaN token's output`)
            .toBe(counts[0] === 3);
        expect(out.subarray(0, 16).some(Number.isNaN)).withContext(`${backend}: sequence 0's first row`)
            .toBe(counts[0] === 1);
        tf.dispose([x, y]);
      }
      const rows1 = await cache.readSequence(1);
      expect(rows1.every(Number.isFinite)).withContext(`${backend}: sequence 1's cache rows`).toBe(true);
      const rows0 = await cache.readSequence(0);
      expect(rows0.subarray(12, 24).some(Number.isNaN)).withContext(`${backend}: the NaN token's row`).toBe(true);
      expect(rows0.subarray(0, 12).every(Number.isFinite)).withContext(`${backend}: the row before it`).toBe(true);
      cache.release(0);
      cache.release(1);
    }
    cache.dispose();
    layer.dispose();
    rope.dispose();
    expect(tf.memory().numTensors).withContext('numTensors after dispose').toBe(tensorsAtStart);
  });
});
