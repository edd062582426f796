import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {expectClose, goldenTolerance, useWebGPUFor} from './helpers/backends.js';
import {scrambledPagedLayout} from './helpers/paged_layout.js';
import {MLADecodeTilingOverride, setMLADecodeTiling} from '../src/kernels/webgpu/mla_decode_webgpu.js';

/**
 * The webgpu FusedRope and MLADecode kernels against the cpu reference on small random cases:
 * ragged batches, page sizes 1/3/16, several new tokens per sequence at their own positions,
 * heads 1..16, odd dims (scalar instead of vec4 code), context 1 and > 2000 (split over the
 * context, merged by the reduce program). Every cache row outside the sequences' contexts is
 * NaN, so a read of one shows up as a NaN in the output; FusedRope must leave those rows NaN.
 */

interface Sequence {
  cached: number;  // tokens already in the cache
  fresh: number;   // new tokens of this step
}

interface KernelCase {
  heads: number;
  nope: number;  // N (FusedRope only)
  rope: number;  // R
  lora: number;  // L
  pageSize: number;
  sequences: Sequence[];
}

interface CaseData {
  T: number;
  B: number;
  maxPages: number;
  totalPages: number;
  maxContextLength: number;
  lookup: Int32Array;
  tokenInfo: Int32Array;
  /** Rows of the cached tokens random, every other row NaN. */
  cache: Float32Array;
  /** The same, plus random rows for the new tokens (MLADecode reads them: causal k ≤ p). */
  cacheWithNew: Float32Array;
  random: () => number;
}

function makeRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
}

function randomArray(random: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * random() - 1) * scale;
  return a;
}

function makeCase(c: KernelCase, seed: number): CaseData {
  const random = makeRandom(seed);
  const {pageSize, sequences} = c;
  const D = c.lora + c.rope;
  const B = sequences.length;
  const context = sequences.map((s) => s.cached + s.fresh);
  const {maxPages, totalPages, lookup, rowOf} = scrambledPagedLayout(context, pageSize, random);
  const cache = new Float32Array(totalPages * pageSize * D).fill(NaN);
  const cacheWithNew = new Float32Array(cache.length).fill(NaN);
  const tokens: number[] = [];
  sequences.forEach((s, b) => {
    for (let k = 0; k < s.cached + s.fresh; k++) {
      const row = randomArray(random, D);
      if (k < s.cached) cache.set(row, rowOf(b, k) * D);
      cacheWithNew.set(row, rowOf(b, k) * D);
    }
    for (let i = 0; i < s.fresh; i++) tokens.push(b, s.cached + i, rowOf(b, s.cached + i));
  });
  return {
    T: tokens.length / 3, B, maxPages, totalPages, maxContextLength: Math.max(1, ...context),
    lookup, tokenInfo: new Int32Array(tokens), cache, cacheWithNew, random,
  };
}

/** Fails unless NaN sits at the same places in both and the rest agrees within `tolerance`. */
function expectCloseWithNaN(
    actual: Float32Array, expected: Float32Array, tolerance: number, what: string): void {
  const a: number[] = [];
  const e: number[] = [];
  for (let i = 0; i < expected.length; i++) {
    if (Number.isNaN(expected[i]) !== Number.isNaN(actual[i])) {
      fail(`${what}: at ${i} got ${actual[i]}, expected ${expected[i]}`);
      return;
    }
    if (!Number.isNaN(expected[i])) {
      a.push(actual[i]);
      e.push(expected[i]);
    }
  }
  expectClose(a, e, tolerance, what);
}

async function withBackend<T>(backend: string, fn: () => Promise<T>): Promise<T> {
  await tf.setBackend(backend);
  return fn();
}

// ---- FusedRope ---------------------------------------------------------------------------

interface RopeInputs {
  q: Float32Array;
  kv: Float32Array;
  gamma: Float32Array;
  freqsCis: Float32Array;
  maxSeqLen: number;
}

function ropeInputs(c: KernelCase, data: CaseData): RopeInputs {
  const {random, T} = data;
  const R = c.rope;
  const maxSeqLen = data.maxContextLength + 2;
  const freqsCis = new Float32Array(maxSeqLen * R);
  for (let p = 0; p < maxSeqLen; p++) {
    for (let i = 0; i < R / 2; i++) {
      const angle = p * Math.pow(10000, -2 * i / R);
      freqsCis[p * R + 2 * i] = Math.cos(angle);
      freqsCis[p * R + 2 * i + 1] = Math.sin(angle);
    }
  }
  return {
    q: randomArray(random, T * c.heads * (c.nope + R), 2),
    kv: randomArray(random, T * (c.lora + R), 3),
    gamma: randomArray(random, c.lora),
    freqsCis,
    maxSeqLen,
  };
}

/**
 * FusedRope `steps` times on `backend`, step s with kv · (s + 1) (so each step writes new
 * values into the same rows) and a read of the cache in between; returns the last roped q,
 * the cache after the last step and the change in numTensors.
 */
async function runFusedRope(
    backend: string, c: KernelCase, data: CaseData, inputs: RopeInputs, interleaved: boolean,
    steps = 1): Promise<{q: Float32Array, cache: Float32Array, leaked: number}> {
  return withBackend(backend, async () => {
    const R = c.rope;
    const D = c.lora + R;
    const cache = tf.tensor3d(data.cache, [data.totalPages, c.pageSize, D]);
    const t = [
      tf.tensor3d(inputs.q, [data.T, c.heads, c.nope + R]),
      tf.tensor1d(inputs.gamma),
      tf.tensor2d(inputs.freqsCis, [inputs.maxSeqLen, R]),
      tf.tensor2d(data.tokenInfo, [data.T, 3], 'int32'),
    ];
    const kvs = Array.from({length: steps}, (_, s) =>
        tf.tensor2d(inputs.kv.map((x) => x * (s + 1)), [data.T, D]));
    const before = tf.memory().numTensors;
    let q: Float32Array = new Float32Array(0);
    let cacheValues: Float32Array = new Float32Array(0);
    for (let step = 0; step < steps; step++) {
      const out = mla.fusedRope(
          t[0] as tf.Tensor3D, kvs[step], t[1] as tf.Tensor1D, t[2] as tf.Tensor2D,
          t[3] as tf.Tensor2D, cache, {eps: 1e-6, interleaved});
      q = await out.data() as Float32Array;
      out.dispose();
      // On webgpu this read caches a CPU copy of the cache, which the next step's in-place
      // write must invalidate.
      cacheValues = await cache.data() as Float32Array;
    }
    const leaked = tf.memory().numTensors - before;
    tf.dispose([...t, ...kvs, cache]);
    return {q, cache: cacheValues, leaked};
  });
}

const ropeCases: Array<[string, KernelCase, boolean]> = [
  ['one token at position 0, one head, page size 1, interleaved',
   {heads: 1, nope: 4, rope: 8, lora: 16, pageSize: 1, sequences: [{cached: 0, fresh: 1}]}, true],
  ['ragged batch of 3 with up to 8 new tokens, page size 3, NeoX halves',
   {heads: 3, nope: 8, rope: 8, lora: 16, pageSize: 3, sequences: [
     {cached: 5, fresh: 2}, {cached: 0, fresh: 3}, {cached: 2, fresh: 8},
   ]}, false],
  ['ragged batch of 4, page size 16, odd dims (N 5, R 6, L 9), interleaved',
   {heads: 5, nope: 5, rope: 6, lora: 9, pageSize: 16, sequences: [
     {cached: 20, fresh: 1}, {cached: 0, fresh: 4}, {cached: 3, fresh: 2}, {cached: 15, fresh: 3},
   ]}, true],
  ['8 heads, a latent wider than the workgroup (L 150), page size 16, NeoX halves',
   {heads: 8, nope: 16, rope: 16, lora: 150, pageSize: 16, sequences: [
     {cached: 40, fresh: 8}, {cached: 1, fresh: 1},
   ]}, false],
];

describe('FusedRope webgpu kernel vs the cpu reference', () => {
  useWebGPUFor('FusedRope');

  ropeCases.forEach(([name, c, interleaved], index) => {
    const seed = 2000 + index;
    it(`${name} (seed ${seed})`, async () => {
      const data = makeCase(c, seed);
      const inputs = ropeInputs(c, data);
      const expected = await runFusedRope('cpu', c, data, inputs, interleaved);
      const actual = await runFusedRope('webgpu', c, data, inputs, interleaved);
      expect(actual.leaked).withContext('tensors left by the webgpu kernel').toBe(0);
      expectClose(actual.q, expected.q, goldenTolerance(expected.q), `${name}: roped q`);
      expectCloseWithNaN(actual.cache, expected.cache, goldenTolerance(expected.cache),
                         `${name}: cache`);
    });
  });

  it('writes the cache in place on every call, read in between, without leaking tensors',
     async () => {
    const c: KernelCase = {heads: 2, nope: 4, rope: 8, lora: 16, pageSize: 3,
                           sequences: [{cached: 2, fresh: 3}, {cached: 0, fresh: 1}]};
    const data = makeCase(c, 2100);
    const inputs = ropeInputs(c, data);
    const expected = await runFusedRope('cpu', c, data, inputs, true, 3);
    const actual = await runFusedRope('webgpu', c, data, inputs, true, 3);
    expect(actual.leaked).withContext('numTensors change over 3 calls').toBe(0);
    expectCloseWithNaN(actual.cache, expected.cache, goldenTolerance(expected.cache), 'cache');
  });
});

// ---- MLADecode ---------------------------------------------------------------------------

/** MLADecode on `backend`; returns o_lat and the change in numTensors over `calls` calls. */
async function runDecode(
    backend: string, c: KernelCase, data: CaseData, q: Float32Array, calls = 1):
    Promise<{values: Float32Array, leaked: number}> {
  return withBackend(backend, async () => {
    const D = c.lora + c.rope;
    const t = [
      tf.tensor3d(q, [data.T, c.heads, D]),
      tf.tensor3d(data.cacheWithNew, [data.totalPages, c.pageSize, D]),
      tf.tensor2d(data.lookup, [data.B, data.maxPages], 'int32'),
      tf.tensor2d(data.tokenInfo, [data.T, 3], 'int32'),
    ];
    const before = tf.memory().numTensors;
    let values: Float32Array = new Float32Array(0);
    for (let call = 0; call < calls; call++) {
      const out = mla.mlaDecode(
          t[0] as tf.Tensor3D, t[1] as tf.Tensor3D, t[2] as tf.Tensor2D, t[3] as tf.Tensor2D,
          {scale: 1 / Math.sqrt(c.nope + c.rope), kvLoraRank: c.lora,
           maxContextLength: data.maxContextLength});
      values = await out.data() as Float32Array;
      out.dispose();
    }
    const leaked = tf.memory().numTensors - before;
    tf.dispose(t);
    return {values, leaked};
  });
}

const decodeCases: Array<[string, KernelCase]> = [
  ['context 1: one token at position 0, one head, page size 1',
   {heads: 1, nope: 8, rope: 8, lora: 16, pageSize: 1, sequences: [{cached: 0, fresh: 1}]}],
  ['ragged batch of 4 with up to 8 new tokens each, page size 3',
   {heads: 3, nope: 8, rope: 8, lora: 16, pageSize: 3, sequences: [
     {cached: 5, fresh: 2}, {cached: 0, fresh: 3}, {cached: 2, fresh: 8}, {cached: 9, fresh: 1},
   ]}],
  ['odd dims (R 6, L 9: scalar code), 5 heads, page size 16',
   {heads: 5, nope: 8, rope: 6, lora: 9, pageSize: 16, sequences: [
     {cached: 30, fresh: 2}, {cached: 1, fresh: 4},
   ]}],
  ['16 heads in one workgroup, page size 1',
   {heads: 16, nope: 8, rope: 8, lora: 16, pageSize: 1, sequences: [
     {cached: 7, fresh: 3}, {cached: 2, fresh: 1},
   ]}],
  ['a context of 2100 keys split over workgroups, page size 16',
   {heads: 2, nope: 8, rope: 8, lora: 16, pageSize: 16, sequences: [
     {cached: 2098, fresh: 2}, {cached: 3, fresh: 1},
   ]}],
];

describe('MLADecode webgpu kernel vs the cpu reference', () => {
  useWebGPUFor('MLADecode');

  /** Case `c` on cpu, then twice on webgpu under `tiling` (the automatic plan when empty). */
  async function expectDecodeMatchesCpu(
      name: string, c: KernelCase, seed: number, tiling: MLADecodeTilingOverride = {}): Promise<void> {
    const data = makeCase(c, seed);
    const q = randomArray(data.random, data.T * c.heads * (c.lora + c.rope));
    const expected = await runDecode('cpu', c, data, q);
    setMLADecodeTiling(tiling);
    try {
      const actual = await runDecode('webgpu', c, data, q, 2);
      expect(actual.leaked).withContext('numTensors change over 2 webgpu calls').toBe(0);
      expectClose(actual.values, expected.values, goldenTolerance(expected.values), name);
    } finally {
      setMLADecodeTiling({});
    }
  }

  decodeCases.forEach(([name, c], index) => {
    const seed = 3000 + index;
    it(`${name} (seed ${seed})`, () => expectDecodeMatchesCpu(name, c, seed));
  });

  // The browser's SwiftShader gets the software plan; these force others through the same
  // program: the GPU plan's 16 lanes and many splits (lanes past the heads own clamped
  // slots), head blocks that do not divide the heads, one key per tile, and several heads
  // owned by each lane.
  const tilings: Array<[string, MLADecodeTilingOverride, KernelCase]> = [
    ['16 lanes, 5 heads, 64 target workgroups of ≥ 8 keys',
     {workgroupSize: 16, keysPerTile: 4, targetWorkgroups: 64, minKeysPerSplit: 8},
     {heads: 5, nope: 8, rope: 8, lora: 16, pageSize: 4, sequences: [
       {cached: 90, fresh: 2}, {cached: 3, fresh: 1}]}],
    ['4 lanes, head blocks of 3 over 5 heads, one key per tile, split',
     {workgroupSize: 4, headsPerBlock: 3, keysPerTile: 1, targetWorkgroups: 16, minKeysPerSplit: 8},
     {heads: 5, nope: 8, rope: 6, lora: 9, pageSize: 5, sequences: [
       {cached: 40, fresh: 3}, {cached: 0, fresh: 2}]}],
    ['4 lanes owning 4 of 16 heads each, 2 keys per tile',
     {workgroupSize: 4, headsPerBlock: 16, keysPerTile: 2},
     {heads: 16, nope: 8, rope: 8, lora: 16, pageSize: 2, sequences: [
       {cached: 21, fresh: 4}, {cached: 6, fresh: 1}]}],
  ];
  tilings.forEach(([name, tiling, c], index) => {
    const seed = 3100 + index;
    it(`tiling: ${name} (seed ${seed})`, () => expectDecodeMatchesCpu(name, c, seed, tiling));
  });
});
