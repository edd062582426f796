/**
 * Comparing a loaded CausalLM with the float64 reference of HF's modeling code
 * (reference_lm.ts) on a checkpoint the test wrote (lm_checkpoints.ts): every prompt
 * position's logits and the greedy tokens.
 */
import type {CausalLM} from '../../src/models/index.js';
import type {LMCheckpoint} from './lm_checkpoints.js';
import {referenceGreedy, referenceLogits} from './reference_lm.js';

/** Two prompts for a checkpoint of `vocab` tokens (seeded, starting with bos 1). */
export function promptsFor(vocab: number): number[][] {
  return [[1, 17, 200 % vocab, 5, 91, 33, 140 % vocab, 7, 64], [1, 250 % vocab, 3, 120 % vocab]];
}

export interface Comparison {
  /** max |Δlogit| / max(1, max|reference logit|), over prompts and positions. */
  relativeError: number;
  tokens: number[][];
  referenceTokens: number[][];
}

/** Runs `lm` and the reference on the checkpoint's prompts (greedy: `newTokens` each). */
export async function compareWithReference(lm: CausalLM, checkpoint: LMCheckpoint, newTokens = 6): Promise<Comparison> {
  const prompts = promptsFor(checkpoint.spec.vocabSize);
  let relativeError = 0;
  for (const prompt of prompts) {
    const want = referenceLogits(checkpoint.config, checkpoint.weights, prompt);
    const got = await lm.logits(prompt);
    let scale = 1;
    let diff = 0;
    for (let i = 0; i < want.length; i++) {
      scale = Math.max(scale, Math.abs(want[i]));
      diff = Math.max(diff, Math.abs(got[i] - want[i]));
    }
    relativeError = Math.max(relativeError, got.length === want.length ? diff / scale : Infinity);
  }
  const tokens = await lm.generate(prompts, {maxNewTokens: newTokens, stopTokens: []});
  const referenceTokens = prompts.map((p) => referenceGreedy(checkpoint.config, checkpoint.weights, p, newTokens).tokens);
  return {relativeError, tokens, referenceTokens};
}

/**
 * Expects `lm` to match the reference on the checkpoint: float32 — logits within 1e-4·S and the
 * same greedy tokens; bfloat16 — within 3e-2·S and more than 1e-6·S off (bf16 really in use).
 */
export async function expectMatchesReference(lm: CausalLM, checkpoint: LMCheckpoint,
                                             dtype: 'float32'|'bfloat16' = 'float32'): Promise<void> {
  const result = await compareWithReference(lm, checkpoint, dtype === 'float32' ? 6 : 2);
  if (dtype === 'float32') {
    expect(result.relativeError).toBeLessThan(1e-4);
    expect(result.tokens).toEqual(result.referenceTokens);
  } else {
    expect(result.relativeError).toBeLessThan(3e-2);
    expect(result.relativeError).toBeGreaterThan(1e-6);
  }
}
