import * as tf from '@tensorflow/tfjs-core';
import * as mla from '../src/index.js';
import {backendsUnderTest, describeEachBackend, expectClose, expectNoNewTensors} from './helpers/backends.js';

describe('test setup', () => {
  it('runs cpu, and webgpu once its kernels are registered', () => {
    const backends = backendsUnderTest();
    expect(backends[0]).toBe('cpu');
    expect(backends.includes('webgpu'))
        .toBe(tf.getKernel('MLADecode', 'webgpu') !== undefined);
  });

  it('the package root exports registerMLAKernels and registers the cpu kernels', () => {
    expect(typeof mla.registerMLAKernels).toBe('function');
    for (const kernel of ['FusedRope', 'MLAPrefill', 'MLADecode']) {
      expect(tf.getKernel(kernel, 'cpu')).withContext(`${kernel} on cpu`).toBeDefined();
    }
    mla.registerMLAKernels();  // idempotent
  });
});

describeEachBackend('smoke', backend => {
  it('has the backend active', () => {
    expect(tf.getBackend()).toBe(backend);
  });

  it('computes tf.add', async () => {
    await expectNoNewTensors(async () => {
      const a = tf.tensor1d([1, 2, 3, 4.5]);
      const b = tf.tensor1d([10, 20, 30, -0.5]);
      const c = tf.add(a, b);
      expectClose(await c.data(), [11, 22, 33, 4], 0, 'a + b');
      tf.dispose([a, b, c]);
    }, 'tf.add');
  });
});
