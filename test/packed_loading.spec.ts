import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {describeEachBackend} from './helpers/backends.js';
import {seededRandom} from './helpers/mla_fixtures.js';

/**
 * Loading 16-bit checkpoints without a float32 copy: loadSafetensors(…, {keepHalf: true})
 * returns BF16/F16 tensors as PackedHalfTensors (the file's bits, two per int32 word), and
 * loadStateDict stores one whose dtype matches the weight's storage as it is, and widens any
 * other. On cpu and webgpu.
 */

type Dtype = 'float32'|'bfloat16'|'float16';
type FileDtype = 'BF16'|'F16'|'F32';
const PREFIX = 'model.layers.0.self_attn.';
const HIDDEN = 48;

function makeLayer(dtype: Dtype) {
  const rope = new mla.RotaryEmbedding({dim: 8, nHeads: 4, theta: 10000, maxSeqLen: 64});
  const kvParams = new mla.KVCacheParams({headDim: 32 + 8, pageSize: 4});
  const layer = new mla.LatentAttentionWithRope({rope, numAttentionHeads: 4, numKeyValueHeads: 4,
                                                 hiddenSize: HIDDEN, kvParams, qLoraRank: 24, kvLoraRank: 32,
                                                 qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16, dtype});
  return {rope, kvParams, layer};
}

/**
 * A checkpoint for makeLayer's shapes, every entry in `fileDtype`, in the layer's
 * expectedWeightShapes order under PREFIX, with `format: pt` metadata.
 */
function checkpoint(fileDtype: FileDtype, seed = 5): Uint8Array {
  const {rope, layer} = makeLayer('float32');
  const random = seededRandom(seed);
  const entries: Record<string, mla.SafetensorsTensorData> = {};
  for (const [name, shape] of layer.expectedWeightShapes()) {
    const norm = name.endsWith('layernorm.weight');
    const scale = norm ? 0.2 : 1 / Math.sqrt(shape[shape.length - 1]);
    const data = Array.from({length: shape.reduce((a, b) => a * b, 1)}, () => (norm ? 1 : 0) + random(scale));
    entries[PREFIX + name] = {dtype: fileDtype, shape, data};
  }
  layer.dispose();
  rope.dispose();
  return mla.encodeSafetensors(entries, {format: 'pt'});
}

/** The values of each entry of a checkpoint, decoded on the host with half.ts (names without PREFIX). */
function fileValues(file: Uint8Array): Map<string, Float32Array> {
  const header = mla.parseSafetensorsHeader(file);
  const out = new Map<string, Float32Array>();
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (const [name, entry] of header.tensors) {
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const at = header.dataStart + entry.dataOffsets[0];
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      values[i] = entry.dtype === 'F32' ? view.getFloat32(at + 4 * i, true) :
          mla.halfValue(view.getUint16(at + 2 * i, true), entry.dtype === 'BF16' ? 'bfloat16' : 'float16');
    }
    out.set(name.slice(PREFIX.length), values);
  }
  return out;
}

async function stateValues(layer: mla.LatentAttentionWithRope): Promise<Map<string, Float32Array>> {
  const dict = layer.stateDict();
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(dict)) out.set(name, await t.data() as Float32Array);
  tf.dispose(Object.values(dict));
  return out;
}

/** Bit-exact equality of two Float32Arrays (so −0 ≠ 0), naming the first difference. */
function expectSameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length).withContext(`${what}: length`).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      fail(`${what}: index ${i} is ${actual[i]}, expected ${expected[i]}`);
      return;
    }
  }
}

function disposeWeights(weights: mla.SafetensorsWeights): void {
  Object.values(weights).forEach((w) => w.dispose());
}

/**
 * Runs `body` with `measure` (default: the engine's numBytes) sampled after every tensor it
 * registers; returns the peak.
 */
async function peakBytesDuring(body: () => Promise<void>,
                               measure = () => tf.memory().numBytes): Promise<number> {
  const engine = tf.engine() as unknown as {trackTensor: (...args: unknown[]) => void};
  const original = engine.trackTensor;
  let peak = measure();
  engine.trackTensor = function(this: unknown, ...args: unknown[]) {
    original.apply(this, args);
    peak = Math.max(peak, measure());
  };
  try {
    await body();
  } finally {
    engine.trackTensor = original;
  }
  return Math.max(peak, measure());
}

/** Bytes of the layer's stored weights (16-bit ones as int32 words, norms as float32). */
function weightBytes(layer: mla.LatentAttentionWithRope): number {
  return layer.weights.reduce((sum, w) => sum + w.shape.reduce((a, b) => a! * b!, 1)! * 4, 0);
}

describeEachBackend('packed loading: keepHalf checkpoints into 16-bit layers', () => {
  it('bf16 file into a bf16 layer: PackedHalfTensors of the file bits, stored exactly, peak ≤ 1.5× the weight bytes', async () => {
    const file = checkpoint('BF16');
    const expected = fileValues(file);
    const {rope, layer} = makeLayer('bfloat16');
    layer.build([null, HIDDEN]);
    const finalBytes = weightBytes(layer);
    const baseline = tf.memory().numBytes;
    const tensorsAtStart = tf.memory().numTensors;
    const peak = await peakBytesDuring(async () => {
      const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf: true});
      for (const [name, w] of Object.entries(weights)) {
        expect(w).withContext(name).toBeInstanceOf(mla.PackedHalfTensor);
        const packed = w as mla.PackedHalfTensor;
        expect(packed.dtype).withContext(name).toBe('bfloat16');
        expect(packed.words.dtype).withContext(name).toBe('int32');
        expect(packed.words.shape).withContext(name)
            .toEqual([...packed.shape.slice(0, -1), packed.shape[packed.shape.length - 1] / 2]);
      }
      layer.loadStateDict(weights);
      disposeWeights(weights);
    });
    const ratio = (peak - baseline) / finalBytes;
    expect(ratio).withContext(`peak ${peak - baseline} B over the baseline, weights ${finalBytes} B`).toBeLessThanOrEqual(1.5);
    expect(tf.memory().numBytes).withContext('numBytes after loading').toBe(baseline);
    expect(tf.memory().numTensors).withContext('numTensors after loading').toBe(tensorsAtStart);
    const got = await stateValues(layer);
    expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [name, values] of expected) expectSameBits(got.get(name)!, values, name);

    // The same file loaded as float32 holds a float32 copy of every weight: twice the bytes.
    const floatPeak = await peakBytesDuring(async () => {
      const weights = await mla.loadSafetensors(file, {prefix: PREFIX});
      layer.loadStateDict(weights);
      disposeWeights(weights);
    });
    expect((floatPeak - baseline) / finalBytes).withContext('float32 loading (for contrast)').toBeGreaterThan(1.5);
    layer.dispose();
    rope.dispose();
  });

  it('into a layer not built yet: its 16-bit weights start as the file\'s words (shared, no init copy)', async () => {
    const file = checkpoint('BF16');
    const expected = fileValues(file);
    const {rope, layer} = makeLayer('bfloat16');
    const baseline = tf.memory().numBytes;
    let finalBytes = 0;
    const peak = await peakBytesDuring(async () => {
      const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf: true});
      layer.loadStateDict(weights);
      finalBytes = weightBytes(layer);
      // Each 16-bit weight holds the loaded words' own buffer: no copy, no random init.
      for (const variable of layer.weights) {
        const name = variable.originalName.slice(variable.originalName.indexOf('/') + 1);
        const given = weights[name];
        if (given instanceof mla.PackedHalfTensor && !name.endsWith('layernorm.weight')) {  // norms: float32
          expect(variable.read().dataId === given.words.dataId).withContext(`${name} shares the file's words`).toBe(true);
        }
      }
      disposeWeights(weights);
    });
    expect(tf.memory().numBytes - baseline).withContext('the weights after loading').toBe(finalBytes);
    // numBytes counts tensor handles, so the shared buffers count twice until the loaded dict
    // is disposed (and a third handle of one weight while its variable is made): 2× the packed
    // weights plus the largest one, plus the float32 norm weights' initial values and widened
    // copies. (Building with random weights first peaked at ≈ 2.8× in all.)
    const bytesOf = (w: {shape: Array<number|null>}) => w.shape.reduce((a, b) => a! * b!, 1)! * 4;
    const normBytes = layer.weights.filter((w) => w.originalName.endsWith('layernorm.weight'))
                          .reduce((sum, w) => sum + bytesOf(w), 0);
    const largest = Math.max(...layer.weights.map(bytesOf));
    expect(peak - baseline).withContext(`peak ${peak - baseline} B over the baseline, weights ${finalBytes} B ` +
                                        `(norms ${normBytes} B, largest ${largest} B)`)
        .toBeLessThanOrEqual(2 * (finalBytes - normBytes) + largest + 4 * normBytes);
    const got = await stateValues(layer);
    for (const [name, values] of expected) expectSameBits(got.get(name)!, values, name);
    layer.dispose();
    rope.dispose();
  });

  it('the stateDict of a packed-loaded bf16 layer written back as BF16 is byte-identical to the file', async () => {
    const file = checkpoint('BF16', 9);
    const {rope, layer} = makeLayer('bfloat16');
    const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf: true});
    layer.loadStateDict(weights);
    disposeWeights(weights);
    const entries: Record<string, mla.SafetensorsTensorData> = {};
    const dict = layer.stateDict();
    for (const name of layer.expectedWeightShapes().keys()) {
      entries[PREFIX + name] = {dtype: 'BF16', shape: dict[name].shape, data: await dict[name].data()};
    }
    tf.dispose(Object.values(dict));
    const written = mla.encodeSafetensors(entries, {format: 'pt'});
    expect(written.byteLength).toBe(file.byteLength);
    let firstDifference = -1;
    for (let i = 0; i < file.byteLength && firstDifference < 0; i++) if (written[i] !== file[i]) firstDifference = i;
    expect(firstDifference).withContext('first differing byte').toBe(-1);
    layer.dispose();
    rope.dispose();
  });

  it('F16 file into a bf16 layer: widened, then rounded as float32 tensors are', async () => {
    const file = checkpoint('F16', 11);
    const fromFile = fileValues(file);
    const {rope, layer} = makeLayer('bfloat16');
    const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf: true});
    expect(Object.values(weights).every((w) => w instanceof mla.PackedHalfTensor && w.dtype === 'float16')).toBe(true);
    layer.loadStateDict(weights);
    disposeWeights(weights);
    const twin = makeLayer('bfloat16');
    const floats = await mla.loadSafetensors(file, {prefix: PREFIX});
    twin.layer.loadStateDict(floats);
    disposeWeights(floats);
    const got = await stateValues(layer);
    const viaFloat = await stateValues(twin.layer);
    for (const [name, values] of fromFile) {
      expectSameBits(got.get(name)!, viaFloat.get(name)!, `${name} (against float32 loading)`);
      // Every weight of a bf16 layer holds bf16 values (norms: normDtype defaults to dtype).
      expectSameBits(got.get(name)!, values.map((v) => mla.roundToHalf(v, 'bfloat16')), `${name} (bf16 of the f16 values)`);
    }
    // The rounding did something: f16 has 3 more mantissa bits.
    const q = fromFile.get('q_b_proj.weight')!;
    expect(q.some((v) => mla.roundToHalf(v, 'bfloat16') !== v)).toBe(true);
    for (const l of [layer, twin.layer]) l.dispose();
    rope.dispose();
    twin.rope.dispose();
  });

  it('BF16 file into a float32 layer and F16 file into a float16 layer: the file values exactly', async () => {
    for (const [fileDtype, dtype] of [['BF16', 'float32'], ['F16', 'float16']] as Array<[FileDtype, Dtype]>) {
      const file = checkpoint(fileDtype, 13);
      const fromFile = fileValues(file);
      const {rope, layer} = makeLayer(dtype);
      const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf: true});
      layer.loadStateDict(weights);
      disposeWeights(weights);
      const got = await stateValues(layer);
      for (const [name, values] of fromFile) expectSameBits(got.get(name)!, values, `${fileDtype} → ${dtype}: ${name}`);
      layer.dispose();
      rope.dispose();
    }
  });

  it('errors name the entry, and nothing is written', async () => {
    const file = checkpoint('BF16', 17);
    const {rope, layer} = makeLayer('bfloat16');
    const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf: true});
    layer.loadStateDict(weights);
    const before = await stateValues(layer);
    const other = await mla.loadSafetensors(checkpoint('BF16', 19), {prefix: PREFIX, keepHalf: true});
    const tensorsAtStart = tf.memory().numTensors;

    // A PackedHalfTensor of the wrong logical shape ([in, out] instead of [out, in]).
    const wrongShape = new mla.PackedHalfTensor(tf.zeros([32, 64], 'int32'), 'bfloat16', [32, 128]);
    expect(() => layer.loadStateDict({...other, 'kv_b_proj.weight': wrongShape})).toThrowError(
        /loadStateDict: weight 'kv_b_proj\.weight' has shape \[32, 128\] \(a bfloat16 PackedHalfTensor\), expected \[128, 32\]/);
    wrongShape.dispose();
    // An unexpected name.
    const extra = new mla.PackedHalfTensor(tf.zeros([2, 1], 'int32'), 'bfloat16', [2, 2]);
    expect(() => layer.loadStateDict({...other, 'q_proj.weight': extra})).toThrowError(
        /loadStateDict: unexpected weight 'q_proj\.weight' \(expected: q_a_proj\.weight, /);
    // A disposed one.
    extra.dispose();
    expect(() => layer.loadStateDict({...other, 'o_proj.weight': extra})).toThrowError(
        /loadStateDict: weight 'o_proj\.weight' is not a live tf\.Tensor or PackedHalfTensor/);
    expect(tf.memory().numTensors).withContext('numTensors after the errors').toBe(tensorsAtStart);
    const after = await stateValues(layer);
    for (const [name, values] of before) expectSameBits(after.get(name)!, values, `${name} unchanged`);

    // The class checks its own invariants.
    const words = tf.zeros([4, 3], 'int32');
    expect(() => new mla.PackedHalfTensor(words, 'bfloat16', [4, 5])).toThrowError(
        /PackedHalfTensor shape: expected integers ≥ 0 with an even last dim, got \[4,5\]/);
    expect(() => new mla.PackedHalfTensor(words, 'bfloat16', [4, 8])).toThrowError(
        /PackedHalfTensor words: expected a live int32 tensor of shape \[4, 4\] for bfloat16 values of shape \[4, 8\], got int32 \[4, 3\]/);
    expect(() => new mla.PackedHalfTensor(words, 'float8' as 'bfloat16', [4, 6])).toThrowError(
        /PackedHalfTensor dtype: expected 'bfloat16' or 'float16', got 'float8'/);
    words.dispose();
    disposeWeights(weights);
    disposeWeights(other);
    layer.dispose();
    rope.dispose();
  });

  it('a forward step with packed-loaded weights equals one with float32-loaded weights of the same values', async () => {
    const file = checkpoint('BF16', 23);
    const outputs: Float32Array[][] = [];
    for (const keepHalf of [true, false]) {
      const {rope, kvParams, layer} = makeLayer('bfloat16');
      const weights = await mla.loadSafetensors(file, {prefix: PREFIX, keepHalf});
      expect(Object.values(weights).every((w) => (w instanceof mla.PackedHalfTensor) === keepHalf)).toBe(true);
      layer.loadStateDict(weights);
      disposeWeights(weights);
      const cache = new mla.PagedKVCache(kvParams, {totalNumPages: 16});
      cache.claim(0);
      cache.claim(1);
      const random = seededRandom(29);
      const steps: Float32Array[] = [];
      for (const counts of [[5, 3], [1, 1]]) {
        const total = counts[0] + counts[1];
        const x = tf.tensor2d(Array.from({length: total * HIDDEN}, () => random(1)), [total, HIDDEN]);
        const y = layer.forward(x, {kvCollection: cache.fetch([0, 1], counts), inputRowOffsets: [0, counts[0], total]});
        cache.step([0, 1], counts);
        steps.push(await y.data() as Float32Array);
        tf.dispose([x, y]);
      }
      outputs.push(steps);
      cache.dispose();
      layer.dispose();
      rope.dispose();
    }
    const [packed, float] = outputs;
    packed.forEach((values, i) => {
      expect(values.every(Number.isFinite)).withContext(`step ${i} finite`).toBe(true);
      expectSameBits(values, float[i], `step ${i}`);
    });
  });
});
