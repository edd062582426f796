import {readFileSync} from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import {loadCausalLM} from '../../src/models/index.js';
import {expectFixtureBar, LMExpected} from '../helpers/lm_fixture.js';

// tfjs-mla/models on the cpu backend in Node: the tiny_mla_lm fixture from a folder.
const FIXTURE = 'test/fixtures/tiny_mla_lm';
const expected = JSON.parse(readFileSync(`${FIXTURE}/expected.json`, 'utf8')) as LMExpected;

describe('models: tiny_mla_lm from a folder (cpu)', () => {
  it('float32: logits of every prompt position within 1e-4·S and the 12 greedy tokens', async () => {
    const before = tf.memory().numTensors;
    const lm = await loadCausalLM(FIXTURE, {dtype: 'float32'});
    try {
      await expectFixtureBar(lm, expected, 'float32');
    } finally {
      lm.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('bfloat16 weights and cache (the default): within 3e-2·S, argmax at clear-gap rows', async () => {
    const lm = await loadCausalLM(FIXTURE);
    try {
      expect(lm.dtype).toBe('bfloat16');
      expect(lm.cacheDtype).toBe('bfloat16');
      await expectFixtureBar(lm, expected, 'bfloat16');
    } finally {
      lm.dispose();
    }
  });
});
