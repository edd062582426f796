import * as tf from '@tensorflow/tfjs-core';
import {GraphMode, PagedKVCache} from '../src/index.js';
import {describeEachBackend, expectClose, goldenTolerance} from './helpers/backends.js';
import {expectGoldenSteps, GOLDEN_CASES, goldenLayer, ropeOf} from './helpers/mla_fixtures.js';

const GRAPH_MODES: GraphMode[] = ['prefill', 'decode', 'auto'];
const PAGE_SIZES = [1, 16, 128];

// Every golden vector through the public API (claim / fetch / forward / step), in every graph
// mode and page size, against the float64 oracle with the bound 1e-4·max(1, max|y|).
describeEachBackend('golden vectors', () => {
  for (const golden of GOLDEN_CASES) {
    for (const graphMode of GRAPH_MODES) {
      for (const pageSize of PAGE_SIZES) {
        it(`${golden.name}, graphMode ${graphMode}, pageSize ${pageSize}`, async () => {
          const tensorsAtStart = tf.memory().numTensors;
          const rope = ropeOf(golden.config);
          const layer = goldenLayer(golden, rope, pageSize, {graphMode});
          expect(layer.scale).toBeCloseTo(golden.softmaxScale, 12);
          const cache = new PagedKVCache(layer.kvParams, {totalNumPages: Math.ceil(1024 / pageSize)});
          await expectGoldenSteps(layer, golden, cache);
          const {kvLoraRank, qkRopeHeadDim} = golden.config;
          const width = kvLoraRank + qkRopeHeadDim;
          for (const [seqId, expected] of Object.entries(golden.finalCache)) {
            const rows = await cache.readSequence(Number(seqId));
            const length = expected.latent.shape[0];
            expect(cache.cacheLength(Number(seqId))).toBe(length);
            const latent = new Float32Array(length * kvLoraRank);
            const kRope = new Float32Array(length * qkRopeHeadDim);
            for (let k = 0; k < length; k++) {
              latent.set(rows.subarray(k * width, k * width + kvLoraRank), k * kvLoraRank);
              kRope.set(rows.subarray(k * width + kvLoraRank, (k + 1) * width), k * qkRopeHeadDim);
            }
            expectClose(latent, expected.latent.data, goldenTolerance(expected.latent.data),
                        `cache latent of sequence ${seqId}`);
            expectClose(kRope, expected.kRope.data, goldenTolerance(expected.kRope.data),
                        `cache kRope of sequence ${seqId}`);
          }
          cache.dispose();
          layer.dispose();
          rope.dispose();
          // Everything the steps made is owned by the layer, the rope or the cache.
          expect(tf.memory().numTensors).withContext('numTensors after dispose').toBe(tensorsAtStart);
        });
      }
    }
  }
});
