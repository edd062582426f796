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

/** The loaded model, as far as these checks need it. */
interface LogitsModel {
  logits(ids: number[]): Promise<Float32Array>;
  generate(prompts: number[][], options: {maxNewTokens: number}): Promise<number[][]>;
}

/**
 * The fixture's bar for a model: float32 — every prompt position within 1e-4·S and the 12
 * greedy tokens exactly; bfloat16 — within 3e-2·S but more than 1e-5·S off (bf16 really in use),
 * the argmax at every clear-gap position, the greedy tokens up to the first step without a
 * clear gap.
 */
export async function expectFixtureBar(lm: LogitsModel, expected: LMExpected, dtype: 'float32'|'bfloat16'): Promise<void> {
  for (const [p, prompt] of expected.prompts.entries()) {
    const logits = await lm.logits(prompt);
    const scale = logitScale(expected, p);
    const diff = maxAbsDiff(logits, expected.logits[p]);
    if (dtype === 'float32') {
      expect(diff).toBeLessThan(1e-4 * scale);
      continue;
    }
    expect(diff).toBeLessThan(3e-2 * scale);
    expect(diff).toBeGreaterThan(1e-5 * scale);
    for (let t = 0; t < prompt.length; t++) {
      if (clearGap(expected.top2Gap[p][t], scale)) expect(rowArgmax(logits, t)).toBe(rowArgmax(expected.logits[p], t));
    }
  }
  const tokens = await lm.generate(expected.prompts, {maxNewTokens: 12});
  if (dtype === 'float32') {
    expect(tokens).toEqual(expected.greedy);
    return;
  }
  for (const [p, greedy] of expected.greedy.entries()) {
    const scale = logitScale(expected, p);
    const firstUnclear = expected.greedyTop2Gap[p].findIndex((gap) => !clearGap(gap, scale));
    const agreeUpTo = firstUnclear < 0 ? greedy.length : firstUnclear;  // the first unclear step may differ
    expect(tokens[p].slice(0, agreeUpTo)).toEqual(greedy.slice(0, agreeUpTo));
  }
}
