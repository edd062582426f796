import {readFileSync} from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import {loadCausalLM} from '../../src/models/index.js';
import {clearGap, LMExpected, logitScale, maxAbsDiff, rowArgmax} from '../helpers/lm_fixture.js';

// tfjs-mla/models on the cpu backend in Node: the tiny_mla_lm fixture from a folder.
const FIXTURE = 'test/fixtures/tiny_mla_lm';
const expected = JSON.parse(readFileSync(`${FIXTURE}/expected.json`, 'utf8')) as LMExpected;

describe('models: tiny_mla_lm from a folder (cpu)', () => {
  it('float32: logits of every prompt position within 1e-4·S and the 12 greedy tokens', async () => {
    const before = tf.memory().numTensors;
    const lm = await loadCausalLM(FIXTURE, {dtype: 'float32'});
    try {
      for (const [p, prompt] of expected.prompts.entries()) {
        const logits = await lm.logits(prompt);
        const scale = logitScale(expected, p);
        expect(maxAbsDiff(logits, expected.logits[p])).toBeLessThan(1e-4 * scale);
      }
      const tokens = await lm.generate(expected.prompts, {maxNewTokens: 12});
      expect(tokens).toEqual(expected.greedy);
    } finally {
      lm.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('bfloat16 weights and cache: logits within 3e-2·S, argmax at clear-gap rows', async () => {
    const lm = await loadCausalLM(FIXTURE);
    try {
      expect(lm.dtype).toBe('bfloat16');
      expect(lm.cacheDtype).toBe('bfloat16');
      for (const [p, prompt] of expected.prompts.entries()) {
        const logits = await lm.logits(prompt);
        const scale = logitScale(expected, p);
        const diff = maxAbsDiff(logits, expected.logits[p]);
        expect(diff).toBeLessThan(3e-2 * scale);
        expect(diff).toBeGreaterThan(1e-5 * scale);  // bf16 really in use
        for (let t = 0; t < prompt.length; t++) {
          if (clearGap(expected.top2Gap[p][t], scale)) {
            expect(rowArgmax(logits, t)).toBe(rowArgmax(expected.logits[p], t));
          }
        }
      }
      const tokens = await lm.generate(expected.prompts, {maxNewTokens: 12});
      for (const [p, greedy] of expected.greedy.entries()) {
        const scale = logitScale(expected, p);
        const firstUnclear = expected.greedyTop2Gap[p].findIndex((gap) => !clearGap(gap, scale));
        const agreeUpTo = firstUnclear < 0 ? greedy.length : firstUnclear;  // the first unclear step may differ
        expect(tokens[p].slice(0, agreeUpTo)).toEqual(greedy.slice(0, agreeUpTo));
      }
    } finally {
      lm.dispose();
    }
  });
});
