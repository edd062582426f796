import * as tf from '@tensorflow/tfjs-core';
import {mlaRmsNorm, mlaSwiGLU} from '../src/index.js';
import {describeEachBackend} from './helpers/backends.js';
import {seededRandom} from './helpers/mla_fixtures.js';

// MLARMSNorm and MLASwiGLU (the decoder's norm and MLP gate in one kernel each) against their
// formulas in float64, on every backend.

function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const random = seededRandom(seed);
  return Float32Array.from({length: n}, () => random(scale));
}

function maxRelativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return got.length === want.length ? max : Infinity;
}

describeEachBackend('MLARMSNorm and MLASwiGLU', () => {
  // Widths below, at and above the 64 invocations of a webgpu row, one not a multiple of them.
  for (const [rows, width] of [[1, 8], [3, 64], [5, 200], [2, 2048]]) {
    it(`MLARMSNorm [${rows}, ${width}]: x / sqrt(mean(x²) + eps) · gamma within 1e-6`, async () => {
      const x = randomValues(rows * width, rows + width, 3);
      const gamma = randomValues(width, 7 * width);
      const eps = 1e-5;
      const want = new Float64Array(rows * width);
      for (let t = 0; t < rows; t++) {
        let sum = 0;
        for (let d = 0; d < width; d++) sum += x[t * width + d] ** 2;
        const inv = 1 / Math.sqrt(sum / width + eps);
        for (let d = 0; d < width; d++) want[t * width + d] = x[t * width + d] * inv * gamma[d];
      }
      const before = tf.memory().numTensors;
      const out = tf.tidy(() => mlaRmsNorm(tf.tensor2d(x, [rows, width]), tf.tensor1d(gamma), eps));
      expect(out.shape).toEqual([rows, width]);
      expect(maxRelativeError(await out.data(), want)).toBeLessThan(1e-6);
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  for (const [rows, width] of [[1, 3], [4, 160], [2, 1000]]) {
    it(`MLASwiGLU [${rows}, 2·${width}]: silu(gate) · up within 1e-6`, async () => {
      const x = randomValues(rows * 2 * width, width, 6);
      const want = new Float64Array(rows * width);
      for (let t = 0; t < rows; t++) {
        for (let i = 0; i < width; i++) {
          const g = x[t * 2 * width + i];
          want[t * width + i] = g / (1 + Math.exp(-g)) * x[t * 2 * width + width + i];
        }
      }
      const out = tf.tidy(() => mlaSwiGLU(tf.tensor2d(x, [rows, 2 * width])));
      expect(out.shape).toEqual([rows, width]);
      expect(maxRelativeError(await out.data(), want)).toBeLessThan(1e-6);
      out.dispose();
    });
  }

  it('name what is wrong', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      expect(() => mlaSwiGLU(tf.zeros([2, 5]) as tf.Tensor2D)).toThrowError(/mlaSwiGLU x: expected rows of gate \| up/);
      expect(() => mlaRmsNorm(tf.zeros([2, 4]) as tf.Tensor2D, tf.ones([3]) as tf.Tensor1D, 1e-6))
          .toThrowError(/mlaRmsNorm gamma/);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});
