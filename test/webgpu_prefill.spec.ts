import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import * as mla from '../src/index.js';
import {chooseMLAPrefillTiling, MLAPrefillProgram} from '../src/kernels/webgpu/mla_prefill_webgpu.js';
import {expectClose, goldenTolerance, useWebGPUFor} from './helpers/backends.js';
import {scrambledPagedLayout} from './helpers/paged_layout.js';

/**
 * The webgpu MLAPrefill kernel against the cpu reference on small random cases: ragged
 * batches in any token order, page sizes 1/3/16, chunks that start after token 0 and tokens
 * that see no key of the chunk (−Infinity log-sum-exp), odd head dims, a context of > 2000
 * keys. Every cache row outside the sequences' contexts and every kvBuffer row outside the
 * chunks is NaN, so reading one shows up as a NaN in the output.
 */

interface Sequence {
  cached: number;  // tokens already in the cache
  fresh: number;   // new tokens (the queries)
  first: number;   // first context token of the chunk
  rows: number;    // context tokens in the chunk
}

interface PrefillCase {
  heads: number;
  nope: number;
  rope: number;
  v: number;
  lora: number;
  pageSize: number;
  sequences: Sequence[];
  shuffle?: boolean;
}

interface CaseData {
  shapes: Record<string, number[]>;
  values: Record<string, Float32Array|Int32Array>;
  attrs: mla.MLAPrefillAttrs;
}

function makeCase(c: PrefillCase, seed: number): CaseData {
  let state = seed;
  const random = () => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
  const fill = (a: Float32Array, start: number, n: number, s = 1) => {
    for (let i = 0; i < n; i++) a[start + i] = (2 * random() - 1) * s;
  };
  const {heads: H, nope: N, rope: R, v: V, lora: L, pageSize, sequences} = c;
  const D = L + R;
  const B = sequences.length;
  const context = sequences.map((s) => s.cached + s.fresh);
  const {maxPages, totalPages, lookup, rowOf} = scrambledPagedLayout(context, pageSize, random);
  const cache = new Float32Array(totalPages * pageSize * D).fill(NaN);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < context[b]; k++) fill(cache, rowOf(b, k) * D, D);
  }
  const chunkInfo = new Int32Array(B * 3);
  let bufferRow = 2;
  for (let b = 0; b < B; b++) {
    chunkInfo.set([bufferRow, sequences[b].first, sequences[b].rows], b * 3);
    bufferRow += sequences[b].rows + 1;
  }
  const bufferRows = bufferRow + 2;
  const kvBuffer = new Float32Array(bufferRows * H * (N + V)).fill(NaN);
  for (let b = 0; b < B; b++) {
    fill(kvBuffer, chunkInfo[b * 3] * H * (N + V), sequences[b].rows * H * (N + V));
  }
  const tokens: number[][] = [];
  sequences.forEach((s, b) => {
    for (let i = 0; i < s.fresh; i++) {
      const p = s.cached + i;
      tokens.push([b, p, rowOf(b, p)]);
    }
  });
  if (c.shuffle) {
    for (let i = tokens.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [tokens[i], tokens[j]] = [tokens[j], tokens[i]];
    }
  }
  const T = tokens.length;
  const q = new Float32Array(T * H * (N + R));
  fill(q, 0, q.length, 2);
  return {
    shapes: {
      q: [T, H, N + R], kvBuffer: [bufferRows, H, N + V], cache: [totalPages, pageSize, D],
      lookup: [B, maxPages], tokenInfo: [T, 3], chunkInfo: [B, 3],
    },
    values: {q, kvBuffer, cache, lookup, tokenInfo: new Int32Array(tokens.flat()), chunkInfo},
    attrs: {scale: 1 / Math.sqrt(N + R), qkNopeHeadDim: N},
  };
}

/** The MLAPrefill program with the tiling for a CPU (`software`) or a GPU adapter, on webgpu. */
async function runTiling(data: CaseData, software: boolean): Promise<Float32Array> {
  await tf.setBackend('webgpu');
  const backend = tf.backend() as WebGPUBackend;
  const [numTokens, numHeads, qHeadDim] = data.shapes.q;
  const nopeDim = data.attrs.qkNopeHeadDim;
  const ropeDim = qHeadDim - nopeDim;
  const dims = {numHeads, nopeDim, ropeDim, vDim: data.shapes.kvBuffer[2] - nopeDim,
                kvLoraRank: data.shapes.cache[2] - ropeDim};
  const program = new MLAPrefillProgram(
      numTokens, dims, chooseMLAPrefillTiling(dims, 16384, 256, software));
  const names = ['q', 'kvBuffer', 'cache', 'lookup', 'tokenInfo', 'chunkInfo'];
  const inputs = names.map((name) => {
    const values = data.values[name];
    return tf.tensor(values, data.shapes[name], values instanceof Int32Array ? 'int32' : 'float32');
  });
  const info = backend.runWebGPUProgram(
      program, inputs, 'float32', [{type: 'float32', data: [data.attrs.scale]}]);
  const out = tf.engine().makeTensorFromTensorInfo(info);
  const values = await out.data() as Float32Array;
  tf.dispose([out, ...inputs]);
  return values;
}

/** MLAPrefill on `backend`; returns the output values and the change in numTensors. */
async function runPrefill(backend: string, data: CaseData):
    Promise<{values: Float32Array, leaked: number}> {
  await tf.setBackend(backend);
  const t: Record<string, tf.Tensor> = {};
  for (const [name, values] of Object.entries(data.values)) {
    t[name] = tf.tensor(values, data.shapes[name], values instanceof Int32Array ? 'int32' : 'float32');
  }
  const before = tf.memory().numTensors;
  const out = mla.mlaPrefill(
      t.q as tf.Tensor3D, t.kvBuffer as tf.Tensor3D, t.cache as tf.Tensor3D,
      t.lookup as tf.Tensor2D, t.tokenInfo as tf.Tensor2D, t.chunkInfo as tf.Tensor2D, data.attrs);
  const values = await out.data() as Float32Array;
  out.dispose();
  const leaked = tf.memory().numTensors - before;
  tf.dispose(Object.values(t));
  return {values, leaked};
}

const tiny = {nope: 8, rope: 8, v: 8, lora: 16};
const cases: Array<[string, PrefillCase]> = [
  ['one sequence, one head, page size 1',
   {...tiny, heads: 1, pageSize: 1, sequences: [{cached: 3, fresh: 6, first: 0, rows: 9}]}],
  ['ragged batch of 4 in shuffled order, page size 3',
   {...tiny, heads: 3, pageSize: 3, shuffle: true, sequences: [
     {cached: 0, fresh: 9, first: 0, rows: 9}, {cached: 5, fresh: 40, first: 0, rows: 45},
     {cached: 2, fresh: 1, first: 0, rows: 3}, {cached: 0, fresh: 20, first: 0, rows: 20},
   ]}],
  ['chunks starting after token 0, tokens that see nothing, an empty chunk, page size 16',
   {...tiny, heads: 2, pageSize: 16, sequences: [
     {cached: 10, fresh: 30, first: 20, rows: 12}, {cached: 0, fresh: 17, first: 8, rows: 8},
     {cached: 4, fresh: 5, first: 0, rows: 0},
   ]}],
  ['odd head dims (N 5, R 6, V 7, L 9)',
   {nope: 5, rope: 6, v: 7, lora: 9, heads: 2, pageSize: 3, sequences: [
     {cached: 2, fresh: 19, first: 1, rows: 20}, {cached: 0, fresh: 4, first: 0, rows: 4},
   ]}],
  ['a context of 2100 keys',
   {...tiny, heads: 2, pageSize: 16, sequences: [
     {cached: 2090, fresh: 10, first: 0, rows: 2100}, {cached: 0, fresh: 3, first: 0, rows: 3},
   ]}],
];

describe('MLAPrefill webgpu kernel vs the cpu reference', () => {
  useWebGPUFor('MLAPrefill');

  cases.forEach(([name, c], index) => {
    const seed = 1000 + index;
    it(`${name} (seed ${seed})`, async () => {
      const data = makeCase(c, seed);
      const expected = await runPrefill('cpu', data);
      const actual = await runPrefill('webgpu', data);
      expect(actual.leaked).withContext('tensors left by the webgpu kernel').toBe(0);
      let noKey = 0;
      for (let i = c.v; i < expected.values.length; i += c.v + 1) {
        if (expected.values[i] === -Infinity) noKey++;
      }
      if (name.includes('see nothing')) {
        expect(noKey).withContext('rows that see no key').toBeGreaterThan(0);
      }
      expectClose(actual.values, expected.values, goldenTolerance(expected.values), name);
    });
  });

  it('both tilings (CPU adapter: 8 rows per invocation; GPU: 1 row) match the reference', async () => {
    const data = makeCase(cases[2][1], 2000);
    const expected = await runPrefill('cpu', data);
    for (const software of [true, false]) {
      const actual = await runTiling(data, software);
      expectClose(actual, expected.values, goldenTolerance(expected.values),
                  software ? 'software tiling' : 'gpu tiling');
    }
  });
});
