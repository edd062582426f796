// Loaded first in the Node lane's bundle (scripts/node-lane.mjs), before every spec in
// test/node/. These specs run in Node on tfjs's cpu backend: no browser, no GPU.
import '@tensorflow/tfjs-backend-cpu';
// Registers the gradients and chained ops the layers use.
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
// The package root registers its kernels on import.
import '../../src/index.js';

jasmine.DEFAULT_TIMEOUT_INTERVAL = 30_000;

// As in the browser lane (and tfjs's own tests): the engine checks every kernel call for
// leaked intermediates. It also silences tfjs-backend-cpu's "install tfjs-node" notice.
tf.env().set('IS_TEST', true);

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
  if (tf.getBackend() !== 'cpu') throw new Error(`active backend is '${tf.getBackend()}', expected 'cpu'`);
});
