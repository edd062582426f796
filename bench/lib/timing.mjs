// Timing helpers: medians, and a "K dispatches per sync" timer that removes the fixed
// submit + read-back latency of the sync.
import * as tf from '@tensorflow/tfjs-core';
import {syncWebGPU} from './webgpu_programs.mjs';

export const now = () => performance.now();

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Waits for all submitted device work (webgpu: a 1-float read-back; cpu: nothing queued). */
export async function sync() {
  if (tf.getBackend() === 'webgpu') await syncWebGPU();
}

/** The fixed cost of one sync on an idle queue (median of `reps`), in ms. */
export async function measureSyncLatency(reps = 15) {
  for (let i = 0; i < 3; i++) await sync();
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await sync();
    times.push(now() - t0);
  }
  return median(times);
}

/**
 * Time of one call of `fn` (which enqueues device work and returns tensors to dispose or
 * null), measured as `k` calls back to back followed by one sync, minus the sync latency,
 * divided by k. `k` is chosen once so that a batch takes about `targetMs`.
 */
export class BatchTimer {
  constructor(fn, syncLatency, {targetMs = 150, maxK = 64} = {}) {
    this.fn = fn;
    this.syncLatency = syncLatency;
    this.targetMs = targetMs;
    this.maxK = maxK;
    this.k = 1;
  }

  async runBatch(k) {
    const t0 = now();
    for (let i = 0; i < k; i++) {
      const out = this.fn();
      if (out) tf.dispose(out);
    }
    await sync();
    return Math.max(0, now() - t0 - this.syncLatency) / k;
  }

  /** One warm-up call (compiles), then picks k from a single timed call. */
  async warmUp() {
    await this.runBatch(1);
    const single = await this.runBatch(1);
    this.k = Math.max(1, Math.min(this.maxK, Math.round(this.targetMs / Math.max(single, 0.01))));
    return single;
  }

  /** One sample: ms per call. */
  async sample() {
    return this.runBatch(this.k);
  }
}
