import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {describeEachBackend, expectClose, expectNoNewTensors} from './helpers/backends.js';

/**
 * MLALinear (y = x · wᵀ, x [M, K], w [N, K]) on every backend against a float64
 * reference computed here and against tf.matMul(x, w, false, true) on the same backend:
 * M = 1..8 (one block of rows), 9 and 20 (blocks of 8 rows, the last one partial), K = 4, 36,
 * 130 (not a multiple of 4: the scalar program) and 2048, N = 1, 5, 576 (N not a multiple of the
 * rows of w per invocation: the clamped tail).
 * Bound: max |Δ| ≤ 1e-5 · K · max|x| · max|w|.
 */

function randomValues(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 * 2 - 1) * scale;
  }
  return out;
}

function reference(x: Float32Array, w: Float32Array, m: number, k: number, n: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let l = 0; l < k; l++) sum += x[i * k + l] * w[j * k + l];
      y[i * n + j] = sum;
    }
  }
  return y;
}

function maxAbs(a: Float32Array): number {
  let v = 0;
  for (const e of a) v = Math.max(v, Math.abs(e));
  return v;
}

describeEachBackend('mlaLinear', (backend) => {
  for (const k of [4, 36, 130, 2048]) {
    for (const n of [1, 5, 576]) {
      it(`M = 1..8, 9, 20, K = ${k}, N = ${n}: matches the float64 reference and tf.matMul`, async () => {
        for (const m of [1, 2, 3, 4, 5, 6, 7, 8, 9, 20]) {
          const xv = randomValues(m * k, 7 * m + k, 1.5);
          const wv = randomValues(n * k, 13 * n + k, 0.05);
          const tolerance = 1e-5 * k * maxAbs(xv) * maxAbs(wv);
          const expected = reference(xv, wv, m, k, n);
          await expectNoNewTensors(async () => {
            const x = tf.tensor2d(xv, [m, k]);
            const w = tf.tensor2d(wv, [n, k]);
            const y = mla.mlaLinear(x, w);
            const yMatMul = tf.matMul(x, w, false, true);
            expect(y.shape).toEqual([m, n]);
            const got = await y.data();
            expectClose(got, expected, tolerance, `${backend} M=${m} K=${k} N=${n} vs reference`);
            expectClose(got, await yMatMul.data(), tolerance,
                        `${backend} M=${m} K=${k} N=${n} vs tf.matMul`);
            tf.dispose([x, w, y, yMatMul]);
          }, `mlaLinear M=${m} K=${k} N=${n}`);
        }
      });
    }
  }

  it('with a batch dim: one product per entry (G = 3 and 1, M = 1, 2 and 9, K = 36 and 130, N = 5 and 17)',
     async () => {
       // G = 1 keeps its batch dim in the output (a bug fixed: it came out as [M, N]).
       for (const [g, m, k, n] of [[3, 1, 36, 5], [3, 9, 130, 17], [3, 2, 36, 17], [1, 1, 36, 5]]) {
         const xv = randomValues(g * m * k, 5 * m + k, 1.5);
         const wv = randomValues(g * n * k, 11 * n + k, 0.05);
         const tolerance = 1e-5 * k * maxAbs(xv) * maxAbs(wv);
         const expected = new Float64Array(g * m * n);
         for (let b = 0; b < g; b++) {
           expected.set(reference(xv.subarray(b * m * k, (b + 1) * m * k),
                                  wv.subarray(b * n * k, (b + 1) * n * k), m, k, n), b * m * n);
         }
         await expectNoNewTensors(async () => {
           const x = tf.tensor3d(xv, [g, m, k]);
           const w = tf.tensor3d(wv, [g, n, k]);
           const y = mla.mlaLinear(x, w);
           expect(y.shape).toEqual([g, m, n]);
           expectClose(await y.data(), expected, tolerance, `${backend} G=${g} M=${m} K=${k} N=${n}`);
           tf.dispose([x, w, y]);
         }, `mlaLinear G=${g} M=${m} K=${k} N=${n}`);
       }
     });

  it('residual: y = residual + x·wᵀ in the product, with w2, gamma, 16-bit weights and a tokens-first batch', async () => {
    for (const [m, k, n] of [[1, 36, 17], [9, 130, 5], [20, 64, 576]]) {
      const xv = randomValues(m * k, 3 * m + k, 1.5);
      const wv = randomValues(n * k, 5 * n + k, 0.05);
      const rv = randomValues(m * n, 7 * m + n, 2);
      const expected = reference(xv, wv, m, k, n).map((v, i) => v + rv[i]);
      const tolerance = 1e-5 * k * maxAbs(xv) * maxAbs(wv) + 1e-6 * maxAbs(rv);
      await expectNoNewTensors(async () => {
        const [x, w, residual] = [tf.tensor2d(xv, [m, k]), tf.tensor2d(wv, [n, k]), tf.tensor2d(rv, [m, n])];
        const y = mla.mlaLinear(x, w, {residual});
        expectClose(await y.data(), expected, tolerance, `${backend} residual M=${m} K=${k} N=${n}`);
        // With every other option: the sum equals the product without the residual, plus it.
        const gamma = tf.tensor1d(randomValues(k, k, 1));
        const half = Math.floor(n / 2) || 1;
        const [wa, wb] = [tf.slice(w, [0, 0], [half, k]), tf.slice(w, [half, 0], [n - half, k])];
        const packed = mla.mlaPackHalf(wa, 'bfloat16');
        const packedB = mla.mlaPackHalf(wb, 'bfloat16');
        const options = {gamma, normEps: 1e-6, w2: packedB as tf.Tensor2D, weightDtype: 'bfloat16' as const};
        const plain = mla.mlaLinear(x, packed as tf.Tensor2D, options);
        const summed = mla.mlaLinear(x, packed as tf.Tensor2D, {...options, residual});
        const want = Array.from(await plain.data(), (v, i) => v + rv[i]);
        expectClose(await summed.data(), Float64Array.from(want), 1e-5 * (1 + maxAbs(rv)), `${backend} residual + options`);
        tf.dispose([x, w, residual, y, gamma, wa, wb, packed, packedB, plain, summed]);
      }, `mlaLinear residual M=${m}`);
    }
    // Tokens first: x [M, G, K], w [G, N, K], residual [M, G, N].
    const [m, g, k, n] = [3, 2, 36, 5];
    await expectNoNewTensors(async () => {
      const x = tf.tensor3d(randomValues(m * g * k, 1, 1), [m, g, k]);
      const w = tf.tensor3d(randomValues(g * n * k, 2, 0.1), [g, n, k]);
      const residual = tf.tensor3d(randomValues(m * g * n, 3, 1), [m, g, n]);
      const plain = mla.mlaLinear(x, w, {tokenMajor: true});
      const summed = mla.mlaLinear(x, w, {tokenMajor: true, residual});
      const want = tf.add(plain, residual);
      expectClose(await summed.data(), Float64Array.from(await want.data()), 1e-5, `${backend} tokenMajor residual`);
      expect(() => tf.tidy(() => mla.mlaLinear(x, w, {tokenMajor: true, residual: tf.zeros([m, g, n + 1])})))
          .toThrowError(/mlaLinear residual \(the output's shape\): expected shape \[3, 2, 5\], got \[3, 2, 6\]/);
      tf.dispose([x, w, residual, plain, summed, want]);
    }, 'mlaLinear tokenMajor residual');
  });

  it('rejects mismatched shapes and non-float32 inputs', () => {
    const x = tf.zeros([2, 8]) as tf.Tensor2D;
    const w = tf.zeros([3, 6]) as tf.Tensor2D;
    const wInt = tf.zeros([3, 8], 'int32') as tf.Tensor2D;
    expect(() => mla.mlaLinear(x, w)).toThrowError(/mlaLinear w: expected shape \[\?, 8\]/);
    expect(() => mla.mlaLinear(x, wInt)).toThrowError(/expected dtype float32/);
    const x3 = tf.zeros([2, 1, 8]) as tf.Tensor3D;
    const w3 = tf.zeros([3, 4, 8]) as tf.Tensor3D;
    expect(() => mla.mlaLinear(x3, w3)).toThrowError(/mlaLinear w: expected shape \[2, \?, 8\], got \[3, 4, 8\]/);
    tf.dispose([x, w, wInt, x3, w3]);
  });
});
