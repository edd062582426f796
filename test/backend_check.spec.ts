import * as tf from '@tensorflow/tfjs-core';
import {fusedRope, mlaDecode, mlaLinear, mlaPrefill} from '../src/index.js';
import {assertSupportedBackend} from '../src/ops/backend_check.js';

/** A backend with no kernels at all, standing in for 'webgl' or 'tensorflow'. */
class DummyBackend extends tf.KernelBackend {
  override numDataIds(): number {
    return 0;
  }
  override dispose(): void {}
}

const DUMMY = 'mla-dummy-backend';

describe('the active backend check', () => {
  let previous = 'cpu';
  // Inputs made on cpu before the switch (the dummy backend cannot hold data); the check
  // comes before anything reads them.
  let t: Record<string, tf.Tensor> = {};

  beforeAll(() => {
    previous = tf.getBackend();
    t = {
      q: tf.zeros([2, 1, 8]), kv: tf.zeros([2, 8]), gamma: tf.ones([4]), freqsCis: tf.zeros([4, 4]),
      tokenInfo: tf.zeros([2, 3], 'int32'), cache: tf.zeros([1, 4, 8]), lookup: tf.zeros([1, 1], 'int32'),
      kvBuffer: tf.zeros([2, 1, 8]), chunkInfo: tf.zeros([1, 3], 'int32'),
      x: tf.ones([2, 3]), w: tf.ones([4, 3]),
    };
  });

  afterAll(async () => {
    if (tf.getBackend() !== previous) await tf.setBackend(previous);
    if (tf.findBackend(DUMMY) !== null) tf.removeBackend(DUMMY);
    tf.dispose(Object.values(t));
  });

  function expectBackendError(entry: string, call: () => unknown): void {
    let message = '';
    try {
      call();
    } catch (e) {
      message = e instanceof Error ? e.message : String(e);
    }
    expect(message).withContext(`${entry} on '${DUMMY}'`).toContain(`${entry}: the active tfjs backend is '${DUMMY}'`);
    expect(message).toContain(`await tf.setBackend('webgpu')`);
    expect(message).toContain(`await tf.setBackend('cpu')`);
    expect(message).not.toContain('not registered');
  }

  it('every op throws an Error naming the backend and saying how to switch', async () => {
    expect(tf.registerBackend(DUMMY, () => new DummyBackend(), -1)).toBeTrue();
    try {
      expect(await tf.setBackend(DUMMY)).toBeTrue();
      expect(tf.getBackend()).toBe(DUMMY);
      const {q, kv, gamma, freqsCis, tokenInfo, cache, lookup, kvBuffer, chunkInfo, x, w} = t;
      expectBackendError('fusedRope', () => fusedRope(
          q as tf.Tensor3D, kv as tf.Tensor2D, gamma as tf.Tensor1D, freqsCis as tf.Tensor2D,
          tokenInfo as tf.Tensor2D, cache as tf.Tensor3D, {eps: 1e-6, interleaved: true}));
      expectBackendError('mlaDecode', () => mlaDecode(
          q as tf.Tensor3D, cache as tf.Tensor3D, lookup as tf.Tensor2D, tokenInfo as tf.Tensor2D,
          {scale: 1, kvLoraRank: 4, maxContextLength: 4}));
      expectBackendError('mlaPrefill', () => mlaPrefill(
          q as tf.Tensor3D, kvBuffer as tf.Tensor3D, cache as tf.Tensor3D, lookup as tf.Tensor2D,
          tokenInfo as tf.Tensor2D, chunkInfo as tf.Tensor2D, {scale: 1, qkNopeHeadDim: 4}));
      expectBackendError('mlaLinear', () => mlaLinear(x as tf.Tensor2D, w as tf.Tensor2D));
      expectBackendError('myEntry', () => assertSupportedBackend('myEntry'));
    } finally {
      await tf.setBackend(previous);
      tf.removeBackend(DUMMY);
    }
    expect(tf.getBackend()).toBe(previous);
  });

  it('lets the ops run again once a supported backend is active', async () => {
    await tf.setBackend('cpu');
    expect(() => assertSupportedBackend('check')).not.toThrow();
    const y = mlaLinear(t.x as tf.Tensor2D, t.w as tf.Tensor2D);
    expect(Array.from(await y.data())).toEqual(new Array(8).fill(3));
    y.dispose();
    if (tf.getKernel('MLADecode', 'webgpu') !== undefined && (await tf.setBackend('webgpu'))) {
      expect(() => assertSupportedBackend('check')).not.toThrow();
    }
    await tf.setBackend(previous);
  });
});
