/**
 * The tiny_mla_lm fixture's reference numbers (test/fixtures/tiny_mla_lm/expected.json) and the
 * project's bar for them (the fixture README's tolerances and clear-gap rule).
 */
export interface LMExpected {
  prompts: number[][];
  /** Per prompt, flat [T × vocab]. */
  logits: number[][];
  greedy: number[][];
  /** Per prompt, flat [12 × vocab]. */
  greedyLogits: number[][];
  top2Gap: number[][];
  greedyTop2Gap: number[][];
}

export const TINY_LM_VOCAB = 512;

/** S = max(1, max|logit|) over a prompt's logits and greedy rows. */
export function logitScale(expected: LMExpected, prompt: number): number {
  let max = 1;
  for (const v of expected.logits[prompt]) max = Math.max(max, Math.abs(v));
  for (const v of expected.greedyLogits[prompt]) max = Math.max(max, Math.abs(v));
  return max;
}

/** max |a − b| over two flat arrays of the same length (Infinity when they differ in length). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** The argmax of row r of flat [rows × vocab] logits. */
export function rowArgmax(logits: ArrayLike<number>, r: number, vocab = TINY_LM_VOCAB): number {
  let best = r * vocab;
  for (let i = r * vocab + 1; i < (r + 1) * vocab; i++) if (logits[i] > logits[best]) best = i;
  return best - r * vocab;
}

/** Whether the reference's top-2 gap at a row is clear (> 0.05·S). */
export function clearGap(gap: number, scale: number): boolean {
  return gap > 0.05 * scale;
}
