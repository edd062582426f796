import * as tf from '@tensorflow/tfjs-core';
import {countBackendWork} from '../src/index.js';
import {loadCausalLM} from '../src/models/index.js';
import {describeEachBackend} from './helpers/backends.js';
import {expectFixtureBar, LMExpected} from './helpers/lm_fixture.js';
import {CHECKPOINT_VARIANTS, makeCheckpoint} from './helpers/lm_checkpoints.js';
import {expectMatchesReference} from './helpers/lm_compare.js';
import {memoryFetch} from './helpers/memory_fetch.js';

// tfjs-mla/models in the browser, on every backend: the tiny_mla_lm fixture (a 3-layer `youtu`
// bf16 checkpoint in two shards, reference logits from DeepSeek's code in float64) loaded from
// http://127.0.0.1 (karma serves test/fixtures/ under /fixtures/, with HTTP Range).
const FIXTURE_URL = '/fixtures/tiny_mla_lm/';
const FIXTURE_FILES = ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors',
                       'model-00002-of-00002.safetensors'];

async function fixtureJson<T>(file: string): Promise<T> {
  const response = await fetch(FIXTURE_URL + file);
  if (!response.ok) throw new Error(`${FIXTURE_URL}${file}: HTTP ${response.status}`);
  return await response.json() as T;
}

/** A fetch that counts the file bytes it hands out (bodies of 2xx responses) and every status. */
function countingFetch(): {fetch: typeof fetch, bytes: () => number, statuses: number[]} {
  let bytes = 0;
  const statuses: number[] = [];
  const fetchFn: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    statuses.push(response.status);
    if (response.ok) bytes += (await response.clone().arrayBuffer()).byteLength;
    return response;
  };
  return {fetch: fetchFn, bytes: () => bytes, statuses};
}

describeEachBackend('models: tiny_mla_lm over HTTP', () => {
  let expected: LMExpected;
  let fileBytes = 0;

  beforeAll(async () => {
    expected = await fixtureJson<LMExpected>('expected.json');
    fileBytes = 0;
    for (const file of FIXTURE_FILES) {
      fileBytes += Number((await fetch(FIXTURE_URL + file, {method: 'HEAD'})).headers.get('Content-Length'));
    }
  });

  it('float32: every prompt position within 1e-4·S, the 12 greedy tokens, ranges not whole files', async () => {
    const before = tf.memory().numTensors;
    const counter = countingFetch();
    const progress: number[] = [];
    const lm = await loadCausalLM(FIXTURE_URL, {
      dtype: 'float32', fetch: counter.fetch, onProgress: (p) => progress.push(p.loadedBytes / p.totalBytes),
    });
    try {
      expect(counter.bytes()).toBeLessThanOrEqual(fileBytes);
      expect(counter.statuses.filter((s) => s === 206).length).toBeGreaterThanOrEqual(4);  // 2 headers × 2 shards
      expect(counter.statuses.filter((s) => s === 200).length).toBe(2);  // config.json, the index
      expect(counter.statuses.filter((s) => s === 404).length).toBe(3);  // no tokenizer or generation config
      expect(lm.loadStats.wholeFileReads).toEqual([]);
      expect(progress[progress.length - 1]).toBe(1);
      if (tf.getBackend() === 'webgpu') {
        // Before any step the weights are on the GPU only: no host copy of the model is kept.
        const tensorMap = (tf.backend() as unknown as {tensorMap: {get(id: object): {values: unknown}}}).tensorMap;
        const variables = lm.layers.flatMap((layer) => layer.weights);
        expect(variables.length).toBe(3 * 7);
        expect(variables.filter((v) => tensorMap.get(v.read().dataId).values != null).map((v) => v.name)).toEqual([]);
      }
      await expectFixtureBar(lm, expected, 'float32');
      if (tf.getBackend() === 'webgpu') {
        // One decode step of one token: 11 dispatches per layer (norm, attention 7 with q-LoRA and
        // the residual added by o_proj, gate|up with the norm, SwiGLU, down with the residual) +
        // embedding, head, argmax; 3 uploads for the whole model step (token ids, token info, page table).
        const {count} = await countBackendWork(() => lm.generate([[1]], {maxNewTokens: 1}));
        expect(count.dispatches).toBe(11 * lm.config.numLayers + 3);
        expect(count.programs.filter((p) => p === 'BinaryOpProgram')).toEqual([]);
        expect(count.uploads).toBe(3);
      }
    } finally {
      lm.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('bfloat16 weights and cache: within 3e-2·S, clear-gap argmax, ≤ 0.75× the float32 model\'s bytes', async () => {
    const base = tf.memory().numBytes;
    const float = await loadCausalLM(FIXTURE_URL, {dtype: 'float32'});
    const floatBytes = tf.memory().numBytes - base;
    float.dispose();
    const lm = await loadCausalLM(FIXTURE_URL);
    try {
      const bytes = tf.memory().numBytes - base;
      expect(bytes).toBeLessThanOrEqual(0.75 * floatBytes);
      await expectFixtureBar(lm, expected, 'bfloat16');
    } finally {
      lm.dispose();
    }
  });
});

// Checkpoints the fixture does not cover, written by the test and served from memory with
// HTTP's Range semantics, against the float64 reference of HF's modeling code.
describeEachBackend('models: other architectures vs the HF reference', () => {
  for (const name of ['deepseekV3YarnMscales', 'deepseekV2YarnAttentionFactor', 'youtuTiedByDefault']) {
    it(`${name}: float32 logits within 1e-4·S and the same greedy tokens`, async () => {
      const checkpoint = makeCheckpoint(CHECKPOINT_VARIANTS[name]);
      const server = memoryFetch(checkpoint.files);
      const before = tf.memory().numTensors;
      const lm = await loadCausalLM(server.base, {dtype: 'float32', fetch: server.fetch});
      try {
        await expectMatchesReference(lm, checkpoint);
      } finally {
        lm.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
