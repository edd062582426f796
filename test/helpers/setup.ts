// Loaded first in the test bundle (scripts/test.mjs), before every spec.
import '@tensorflow/tfjs-backend-cpu';
// Registers the 'webgpu' backend when navigator.gpu exists (Chromium with --enable-unsafe-webgpu).
import '@tensorflow/tfjs-backend-webgpu';
// Registers the gradients and chained ops the layers use.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';

// WebGPU on SwiftShader (a CPU Vulkan) is slow: shader compiles alone take seconds.
jasmine.DEFAULT_TIMEOUT_INTERVAL = 120_000;

// As in tfjs's own tests: the engine checks every kernel call for leaked intermediates
// ("Backend 'x' has an internal memory leak (n data ids) after running 'Kernel'").
tf.env().set('IS_TEST', true);

// A known starting backend for specs that do not use describeEachBackend (the webgpu backend
// has the higher priority and would otherwise be the default).
beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});
