/**
 * The formulas of spec/MLA.md, once each, in plain loops over float64 JS numbers.
 * The cpu kernels are built from these; nothing here is clever on purpose.
 */

/** RMSNorm of `x[offset .. offset + n)`: x · rsqrt(mean(x²) + eps) · gamma, into `out[outOffset ..]`. */
export function rmsNormRow(
    x: ArrayLike<number>, offset: number, n: number, gamma: ArrayLike<number>, eps: number,
    out: Float32Array, outOffset: number): void {
  let sumOfSquares = 0;
  for (let i = 0; i < n; i++) sumOfSquares += x[offset + i] * x[offset + i];
  const inverseRms = 1 / Math.sqrt(sumOfSquares / n + eps);
  for (let i = 0; i < n; i++) out[outOffset + i] = x[offset + i] * inverseRms * gamma[i];
}

/**
 * RoPE of the R values at `x[offset ..]` at one position, into `out[outOffset ..]`.
 * `freqsRow` points at row p of the [maxSeqLen, R] table, laid out [c0, s0, c1, s1, …].
 * Interleaved pairs (2i, 2i+1) as in DeepSeek/MAX, or NeoX halves (i, i + R/2).
 */
export function ropeRow(
    x: ArrayLike<number>, offset: number, ropeDim: number, freqsCis: ArrayLike<number>,
    freqsRow: number, interleaved: boolean, out: Float32Array, outOffset: number): void {
  const half = ropeDim / 2;
  for (let i = 0; i < half; i++) {
    const cos = freqsCis[freqsRow + 2 * i];
    const sin = freqsCis[freqsRow + 2 * i + 1];
    const a = interleaved ? 2 * i : i;
    const b = interleaved ? 2 * i + 1 : i + half;
    const xa = x[offset + a];
    const xb = x[offset + b];
    out[outOffset + a] = xa * cos - xb * sin;
    out[outOffset + b] = xa * sin + xb * cos;
  }
}

/** Flat cache row of token k of the batch row whose page table starts at `lookup[lookupRow]`. */
export function cacheRowOf(
    lookup: ArrayLike<number>, lookupRow: number, pageSize: number, k: number): number {
  return lookup[lookupRow + Math.floor(k / pageSize)] * pageSize + (k % pageSize);
}

/** Dot product of `a[aOffset .. aOffset + n)` and `b[bOffset .. bOffset + n)`. */
export function dot(
    a: ArrayLike<number>, aOffset: number, b: ArrayLike<number>, bOffset: number,
    n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[aOffset + i] * b[bOffset + i];
  return sum;
}

/**
 * Softmax over `scores` in place (returning log Σ exp): the max is subtracted first so the
 * exponentials cannot overflow. An empty list has log-sum-exp −Infinity.
 */
export function softmaxInPlace(scores: number[]): number {
  if (scores.length === 0) return -Infinity;
  let max = -Infinity;
  for (const s of scores) max = Math.max(max, s);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) {
    scores[i] = Math.exp(scores[i] - max);
    sum += scores[i];
  }
  for (let i = 0; i < scores.length; i++) scores[i] /= sum;
  return max + Math.log(sum);
}
