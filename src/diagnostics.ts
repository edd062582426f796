/**
 * Counting what a step costs on the webgpu backend: GPU dispatches and host→GPU uploads are
 * the fixed costs of a layer step on real GPUs (tens of µs each), so tests and the benchmark
 * count them. Only the backend instance's own methods are wrapped (and restored afterwards).
 */
import * as tf from '@tensorflow/tfjs-core';

export interface BackendWorkCount {
  /** Compute dispatches recorded by the backend (every program run, tfjs's own kernels included). */
  dispatches: number;
  /** Tensors whose host values were copied to a GPU buffer. */
  uploads: number;
  /** Program names (the constructor's name) in dispatch order. */
  programs: string[];
}

interface CountableBackend {
  recordAndSubmit(program: object, ...rest: unknown[]): unknown;
  uploadToGPU(dataId: object): void;
  tensorMap: {get(dataId: object): {resource?: unknown, values?: unknown}|undefined};
}

function isCountable(backend: unknown): backend is CountableBackend {
  const b = backend as Partial<CountableBackend>;
  return typeof b.recordAndSubmit === 'function' && typeof b.uploadToGPU === 'function' &&
      b.tensorMap !== undefined;
}

/**
 * Runs `fn` and counts the dispatches and uploads the active webgpu backend makes meanwhile
 * (zero work is counted on other backends). The result of `fn` is returned with the counts;
 * awaits `fn` if it returns a promise.
 */
export async function countBackendWork<T>(fn: () => T|Promise<T>):
    Promise<{result: T, count: BackendWorkCount}> {
  const count: BackendWorkCount = {dispatches: 0, uploads: 0, programs: []};
  const backend: unknown = tf.backend();
  if (tf.getBackend() !== 'webgpu' || !isCountable(backend)) {
    return {result: await fn(), count};
  }
  const record = backend.recordAndSubmit;
  const upload = backend.uploadToGPU;
  backend.recordAndSubmit = function(this: CountableBackend, program: object, ...rest: unknown[]) {
    count.dispatches++;
    count.programs.push(program.constructor.name);
    return record.call(this, program, ...rest);
  };
  backend.uploadToGPU = function(this: CountableBackend, dataId: object) {
    const data = this.tensorMap.get(dataId);
    if (data !== undefined && data.resource == null && data.values != null) count.uploads++;
    upload.call(this, dataId);
  };
  try {
    return {result: await fn(), count};
  } finally {
    // Own-property wrappers: deleting them restores the prototype's methods.
    delete (backend as Partial<CountableBackend>).recordAndSubmit;
    delete (backend as Partial<CountableBackend>).uploadToGPU;
  }
}
