#!/usr/bin/env node
// tfjs-mla/models in Node on the `webgpu` backend (Dawn through the npm `webgpu` package;
// SwiftShader when there is no GPU): the tiny_mla_lm fixture loaded from its folder and from
// http://127.0.0.1 (scripts/lib/checkpoint_server.mjs, Range on), against the fixture's bar —
// float32: every prompt position within 1e-4·S and the 12 greedy tokens exactly; bf16 (the
// default): within 3e-2·S. The browser lane covers the same over HTTP in Chromium
// (test/models.spec.ts); this is the Node side.
//
//   node test/e2e/node_webgpu_model.test.mjs      (needs dist/: npm run build)
//
// Run by `npm test` as an e2e step (one test). Exit 0 = pass; prints `[node-webgpu] PASS …`.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {initNodeWebGPU, releaseNodeWebGPU, rerunWithVulkanLoader} from '../../dist/node.js';
import {loadCausalLM} from '../../dist/models/index.js';
import {startCheckpointServer} from '../../scripts/lib/checkpoint_server.mjs';

await rerunWithVulkanLoader();  // Dawn needs libvulkan.so.1 on LD_LIBRARY_PATH at process start

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = path.join(root, 'test', 'fixtures', 'tiny_mla_lm');
const expected = JSON.parse(readFileSync(path.join(fixture, 'expected.json'), 'utf8'));

const failures = [];
function check(condition, what) {
  if (!condition) failures.push(what);
  console.log(`[node-webgpu]   ${condition ? 'ok  ' : 'FAIL'} ${what}`);
}

/** max |Δ| / S over a prompt's logits, S = max(1, max|logit|) over its logits and greedy rows. */
function relativeError(got, p) {
  let scale = 1;
  for (const v of [...expected.logits[p], ...expected.greedyLogits[p]]) scale = Math.max(scale, Math.abs(v));
  let diff = 0;
  expected.logits[p].forEach((v, i) => {
    diff = Math.max(diff, Math.abs(got[i] - v));
  });
  return got.length === expected.logits[p].length ? diff / scale : Infinity;
}

async function checkModel(source, where, dtype) {
  const before = tf.memory().numTensors;
  const lm = await loadCausalLM(source, {dtype});
  const errors = [];
  for (const [p, prompt] of expected.prompts.entries()) errors.push(relativeError(await lm.logits(prompt), p));
  const worst = Math.max(...errors);
  if (dtype === 'float32') {
    check(worst < 1e-4, `${where}, float32: logits within 1e-4·S at every position (${worst.toExponential(2)})`);
    const tokens = await lm.generate(expected.prompts, {maxNewTokens: 12});
    check(JSON.stringify(tokens) === JSON.stringify(expected.greedy), `${where}, float32: the 12 greedy tokens of both prompts`);
  } else {
    check(worst < 3e-2 && worst > 1e-5, `${where}, ${dtype}: logits within 3e-2·S, bf16 in use (${worst.toExponential(2)})`);
  }
  lm.dispose();
  check(tf.memory().numTensors === before, `${where}, ${dtype}: no tensor left after dispose`);
}

const started = Date.now();
const {adapterInfo} = await initNodeWebGPU();
check(tf.getBackend() === 'webgpu', `the webgpu backend is active (${adapterInfo?.description || adapterInfo?.vendor || 'adapter'})`);
const server = await startCheckpointServer({root: fixture});
try {
  await checkModel(fixture, 'folder', 'float32');
  await checkModel(server.url, server.url, 'float32');
  await checkModel(fixture, 'folder', 'bfloat16');
  const shardReads = server.stats.requests.filter((r) => r.path.endsWith('.safetensors'));
  check(shardReads.length > 0 && shardReads.every((r) => r.status === 206), 'the shards were read by Range requests (206)');
} finally {
  await server.close();
  await releaseNodeWebGPU();
}
console.log(`[node-webgpu] done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
if (failures.length > 0) {
  console.log(`[node-webgpu] FAIL ${failures.length} check(s) (test/e2e/node_webgpu_model.test.mjs)`);
  process.exit(1);
}
console.log('[node-webgpu] PASS tfjs-mla/models in Node on webgpu (test/e2e/node_webgpu_model.test.mjs)');
