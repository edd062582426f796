import * as tf from '@tensorflow/tfjs-core';

/** The tfjs backends tfjs-mla registers its kernels for (src/register.ts). */
export const SUPPORTED_BACKENDS: readonly string[] = ['webgpu', 'cpu'];

/**
 * Throws a clear Error when the active tfjs backend is neither 'webgpu' nor 'cpu' (e.g.
 * 'webgl', the browser default of the umbrella `@tensorflow/tfjs` package, or 'tensorflow'
 * from tfjs-node), instead of tfjs's `Kernel 'FusedRope' not registered for backend 'webgl'`.
 * `entry` names the public function that was called (it starts the message).
 */
export function assertSupportedBackend(entry: string): void {
  const backend = tf.getBackend();
  if (SUPPORTED_BACKENDS.includes(backend)) return;
  throw new Error(
      `${entry}: the active tfjs backend is '${backend}', and tfjs-mla has kernels only for ` +
      `'webgpu' and 'cpu'. Switch before calling it: \`await tf.setBackend('webgpu')\` ` +
      `(import '@tensorflow/tfjs-backend-webgpu' first; in Node use initNodeWebGPU() from ` +
      `'tfjs-mla/node') or \`await tf.setBackend('cpu')\` (import '@tensorflow/tfjs-backend-cpu').`);
}
