/**
 * Choosing the next token from a row of logits: greedy (argmax) or seeded sampling with
 * temperature, top-k and top-p, as HF's generate does (temperature, then top-k, then top-p).
 */

export interface SamplingOptions {
  temperature: number;
  topK: number|null;
  topP: number;
}

/** mulberry32: uniform uint32s from a seed (the same seed, the same sequence). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A seeded uniform generator on [0, 1). */
export function seededUniform(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/** The index of the largest value (the lowest index on a tie). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * A token drawn from softmax(logits / temperature) restricted to the topK most likely tokens
 * and then to the smallest prefix (by probability) whose mass reaches topP.
 */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, uniform: () => number): number {
  const {temperature, topK, topP} = options;
  const vocab = logits.length;
  let candidates: number[];
  if (topK === null && topP >= 1) {
    candidates = Array.from({length: vocab}, (_, i) => i);
  } else {
    candidates = Array.from({length: vocab}, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK !== null) candidates.length = Math.min(topK, vocab);
  }
  let max = -Infinity;
  for (const i of candidates) max = Math.max(max, logits[i]);
  const weights = candidates.map((i) => Math.exp((logits[i] - max) / temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    // candidates are sorted here: keep the prefix whose probability reaches topP (at least one).
    let mass = 0;
    let keep = 0;
    while (keep < candidates.length && mass < topP * total) mass += weights[keep++];
    candidates.length = keep;
    weights.length = keep;
    total = mass;
  }
  let u = uniform() * total;
  for (let k = 0; k < candidates.length; k++) {
    u -= weights[k];
    if (u < 0) return candidates[k];
  }
  return candidates[candidates.length - 1];
}
