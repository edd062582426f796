import * as tf from '@tensorflow/tfjs-core';
// The package root registers its kernels on import; backendsUnderTest() looks them up.
import '../../src/index.js';

/** Karma's client global (present when the bundle runs under karma). */
declare const __karma__: {config?: {args?: string[]}} | undefined;

/** The arguments of `npm test -- …` that reach the browser (karma `client.args`). */
export function karmaArgs(): string[] {
  return typeof __karma__ !== 'undefined' ? __karma__?.config?.args ?? [] : [];
}

/**
 * The backends the specs run on: always 'cpu'; also 'webgpu' once this package's webgpu
 * kernels are registered (looked up by MLADecode).
 */
export function backendsUnderTest(): string[] {
  const backends = ['cpu'];
  if (tf.getKernel('MLADecode', 'webgpu') !== undefined) backends.push('webgpu');
  return backends;
}

/**
 * One `describe(`${name} [${backend}]`)` per backend of backendsUnderTest(), whose specs run
 * with that backend active. The suite runs in a Chromium with WebGPU: if the webgpu backend
 * cannot be set up, its specs fail (they are not skipped).
 */
export function describeEachBackend(name: string, body: (backendName: string) => void): void {
  for (const backend of backendsUnderTest()) {
    describe(`${name} [${backend}]`, () => {
      beforeAll(async () => {
        if (backend === 'webgpu' && !('gpu' in navigator && (navigator as {gpu?: unknown}).gpu)) {
          throw new Error(
              'navigator.gpu is missing: this browser has no WebGPU. The tests must run in ' +
              'Chromium with --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader (npm test).');
        }
        let ok = false;
        let why = '';
        try {
          ok = await tf.setBackend(backend);
        } catch (e) {
          why = `: ${e instanceof Error ? e.message : String(e)}`;
        }
        if (!ok) {
          throw new Error(`tf.setBackend('${backend}') failed${why} (registered backends: ` +
                          `${Object.keys(tf.engine().registryFactory).join(', ')})`);
        }
        await tf.ready();
        if (tf.getBackend() !== backend) {
          throw new Error(`active backend is '${tf.getBackend()}', expected '${backend}'`);
        }
      });
      body(backend);
    });
  }
}

/**
 * Fails unless `actual` and `expected` have the same length and max |actual − expected| ≤
 * tolerance. NaN anywhere (in either) fails. The message names `what`, the index of the
 * worst element, both values and the bound.
 */
export function expectClose(
    actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  if (actual.length !== expected.length) {
    fail(`${what}: length ${actual.length}, expected ${expected.length}`);
    return;
  }
  let worst = -1;
  let worstDiff = -1;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(a) || Number.isNaN(e)) {
      fail(`${what}: NaN at index ${i} (actual ${a}, expected ${e})`);
      return;
    }
    // Equal infinities (e.g. a −Infinity log-sum-exp) match; any other non-finite is a miss.
    const diff = a === e ? 0 : Math.abs(a - e);
    if (!(diff <= worstDiff)) {
      worstDiff = diff;
      worst = i;
    }
  }
  if (worst >= 0 && !(worstDiff <= tolerance)) {
    fail(`${what}: max |Δ| = ${worstDiff} at index ${worst} (actual ${actual[worst]}, ` +
         `expected ${expected[worst]}) exceeds the bound ${tolerance} (${actual.length} elements)`);
    return;
  }
  expect(worstDiff <= tolerance).withContext(what).toBe(true);
}

/** The tolerance for a comparison against a golden fixture: 1e-4 · max(1, max|y|). */
export function goldenTolerance(expected: ArrayLike<number>): number {
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) {
    const v = Math.abs(expected[i]);
    if (v > maxAbs) maxAbs = v;
  }
  return 1e-4 * Math.max(1, maxAbs);
}

/**
 * Runs `fn` and fails if it leaves more tensors alive than before (tf.memory().numTensors).
 * Dispose everything `fn` creates, including its results.
 */
export async function expectNoNewTensors(fn: () => Promise<void> | void, what = 'fn'): Promise<void> {
  const before = tf.memory().numTensors;
  await fn();
  const after = tf.memory().numTensors;
  if (after !== before) {
    fail(`${what} leaked ${after - before} tensor(s): numTensors ${before} → ${after}`);
  } else {
    expect(after).withContext(`${what}: numTensors`).toBe(before);
  }
}

/**
 * For a describe block that compares one kernel on webgpu with cpu: switches to webgpu before
 * its specs (failing when `kernelName` is not registered there or the backend is missing) and
 * back to the previous backend after them.
 */
export function useWebGPUFor(kernelName: string): void {
  let originalBackend: string;
  beforeAll(async () => {
    originalBackend = tf.getBackend();
    if (tf.getKernel(kernelName, 'webgpu') === undefined) {
      throw new Error(`${kernelName} is not registered for webgpu`);
    }
    if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend is not available');
  });
  afterAll(async () => {
    await tf.setBackend(originalBackend);
  });
}
