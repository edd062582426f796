import * as tf from '@tensorflow/tfjs-core';
import type {MLAPrefillAttrs} from '../kernels/kernel_names.js';

/**
 * The pieces of MLA written with plain tfjs ops, so tfjs's autodiff sees them: the no-cache
 * path of the layer (training) and the gradient of MLAPrefill are built from these.
 */

/** RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · gamma. */
export function rmsNorm(x: tf.Tensor, gamma: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const inverseRms = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps));
    return tf.mul(tf.mul(x, inverseRms), gamma);
  });
}

/**
 * RoPE of x [T, ..., R] at the positions [T] (int32): the table rows freqsCis[p] =
 * [c0, s0, c1, s1, …]; interleaved pairs (2i, 2i+1) or NeoX halves (i, i + R/2).
 */
export function applyRope(x: tf.Tensor, freqsCis: tf.Tensor2D, positions: tf.Tensor1D,
                          interleaved: boolean): tf.Tensor {
  return tf.tidy(() => {
    const ropeDim = x.shape[x.rank - 1];
    const half = ropeDim / 2;
    const numTokens = x.shape[0];
    // cos/sin as [T, 1, …, 1, R/2] so they broadcast over the middle axes (heads).
    const middle = new Array(x.rank - 2).fill(1);
    const table = tf.reshape(tf.gather(freqsCis, positions), [numTokens, half, 2]);
    const [cos, sin] = tf.split(table, 2, 2).map((t) => tf.reshape(t, [numTokens, ...middle, half]));
    let a: tf.Tensor;
    let b: tf.Tensor;
    if (interleaved) {
      const pairs = tf.reshape(x, [...x.shape.slice(0, -1), half, 2]);
      [a, b] = tf.split(pairs, 2, x.rank).map((t) => tf.squeeze(t, [x.rank]));
    } else {
      [a, b] = tf.split(x, 2, x.rank - 1);
    }
    const ya = tf.sub(tf.mul(a, cos), tf.mul(b, sin));
    const yb = tf.add(tf.mul(a, sin), tf.mul(b, cos));
    return interleaved ? tf.reshape(tf.stack([ya, yb], x.rank), x.shape) :
                         tf.concat([ya, yb], x.rank - 1);
  });
}

/** The dense quantities of MLAPrefill that its output and its gradient are built from. */
interface PrefillParts {
  qNope: tf.Tensor;        // [T, H, N]
  qRope: tf.Tensor;        // [T, H, R]
  kNope: tf.Tensor;        // [rows, H, N]
  value: tf.Tensor;        // [rows, H, V]
  kRope: tf.Tensor2D;      // [rows, R]: k_rope of each buffer row, read from the cache
  slot: tf.Tensor1D;       // [rows]: the cache row each buffer row's k_rope came from
  probabilities: tf.Tensor;  // [H, T, rows], 0 where not visible
  out: tf.Tensor;          // [H, T, V]
  lse: tf.Tensor;          // [H, T, 1], −∞ where nothing is visible
}

function prefillParts(
    q: tf.Tensor3D, kvBuffer: tf.Tensor3D, cache: tf.Tensor3D, lookup: tf.Tensor2D,
    tokenInfo: tf.Tensor2D, chunkInfo: tf.Tensor2D, attrs: MLAPrefillAttrs): PrefillParts {
  const [numTokens, numHeads, qHeadDim] = q.shape;
  const numRows = kvBuffer.shape[0];
  const nopeDim = attrs.qkNopeHeadDim;
  const ropeDim = qHeadDim - nopeDim;
  const vHeadDim = kvBuffer.shape[2] - nopeDim;
  const [, pageSize, rowWidth] = cache.shape;
  const kvLoraRank = rowWidth - ropeDim;
  const numSeqs = lookup.shape[0];

  // Which batch row and token each buffer row holds (rows outside every range are masked).
  const rowIndex = tf.range(0, numRows, 1, 'int32');                        // [rows]
  const [start, first, count] = tf.split(chunkInfo, 3, 1);                   // [B, 1] each
  const inSeq = tf.logicalAnd(tf.greaterEqual(rowIndex, start),
                              tf.less(rowIndex, tf.add(start, count)));      // [B, rows]
  const rowSeq = tf.argMax(tf.cast(inSeq, 'int32'), 0) as tf.Tensor1D;       // [rows]
  const rowValid = tf.any(inSeq, 0);                                          // [rows]
  const rowToken = tf.add(tf.gather(tf.reshape(first, [numSeqs]), rowSeq),
                          tf.sub(rowIndex, tf.gather(tf.reshape(start, [numSeqs]), rowSeq)));
  const pageSizeInt = tf.scalar(pageSize, 'int32');
  const page = tf.gatherND(lookup, tf.stack([rowSeq, tf.floorDiv(rowToken, pageSizeInt)], 1));
  const slot = tf.maximum(tf.add(tf.mul(page, pageSizeInt), tf.mod(rowToken, pageSizeInt)),
                          tf.scalar(0, 'int32')) as tf.Tensor1D;
  const kRope = tf.slice(tf.gather(tf.reshape(cache, [-1, rowWidth]), slot),
                         [0, kvLoraRank], [numRows, ropeDim]) as tf.Tensor2D;

  // Visible: same sequence, a row of the chunk, and not after the token.
  const [tokenSeq, tokenPos] = tf.split(tokenInfo, [1, 1, 1], 1);           // [T, 1]
  const visible = tf.logicalAnd(
      tf.logicalAnd(tf.equal(tokenSeq, rowSeq), rowValid), tf.lessEqual(rowToken, tokenPos));

  const [qNope, qRope] = tf.split(q, [nopeDim, ropeDim], 2);
  const [kNope, value] = tf.split(kvBuffer, [nopeDim, vHeadDim], 2);
  const nopeScores = tf.matMul(tf.transpose(qNope, [1, 0, 2]), tf.transpose(kNope, [1, 0, 2]),
                               false, true);                                   // [H, T, rows]
  const ropeScores = tf.reshape(
      tf.matMul(tf.reshape(qRope, [numTokens * numHeads, ropeDim]), kRope, false, true),
      [numTokens, numHeads, numRows]);
  const scores = tf.mul(tf.add(nopeScores, tf.transpose(ropeScores, [1, 0, 2])), attrs.scale);
  const mask = tf.broadcastTo(tf.expandDims(visible, 0), scores.shape);
  const masked = tf.where(mask, scores, tf.fill(scores.shape, -1e30));
  const rowMax = tf.max(masked, -1, true);
  const weights = tf.mul(tf.exp(tf.sub(masked, rowMax)), tf.cast(mask, 'float32'));
  const total = tf.sum(weights, -1, true);
  const anyVisible = tf.any(mask, -1, true);
  const probabilities = tf.div(weights, tf.where(anyVisible, total, tf.onesLike(total)));
  const out = tf.matMul(probabilities, tf.transpose(value, [1, 0, 2]));       // [H, T, V]
  const lse = tf.where(anyVisible, tf.add(rowMax, tf.log(tf.maximum(total, 1e-30))),
                       tf.fill(total.shape, -Infinity));
  return {qNope, qRope, kNope, value, kRope, slot, probabilities, out, lse};
}

/**
 * MLAPrefill (contract in src/kernels/kernel_names.ts) with dense tfjs ops: the scores of
 * every token against every buffer row, masked to the rows it may see. Memory is
 * O(H·T·rows): a reference for tests and the base of the gradient, not for inference.
 */
export function mlaPrefillComposite(
    q: tf.Tensor3D, kvBuffer: tf.Tensor3D, cache: tf.Tensor3D, lookup: tf.Tensor2D,
    tokenInfo: tf.Tensor2D, chunkInfo: tf.Tensor2D, attrs: MLAPrefillAttrs): tf.Tensor3D {
  return tf.tidy(() => {
    const {out, lse} = prefillParts(q, kvBuffer, cache, lookup, tokenInfo, chunkInfo, attrs);
    return tf.transpose(tf.concat([out, lse], 2), [1, 0, 2]) as tf.Tensor3D;
  });
}

/**
 * The gradient of MLAPrefill for dy [T, H, V + 1] (output | log-sum-exp), by the usual
 * attention backward: dV = Pᵀ·dO, dS = P ∘ (dO·Vᵀ − rowsum(dO ∘ O) + dLse), then the score
 * products. k_rope's gradient is summed into the cache rows it was read from.
 */
export function mlaPrefillCompositeGrad(
    dy: tf.Tensor3D, q: tf.Tensor3D, kvBuffer: tf.Tensor3D, cache: tf.Tensor3D,
    lookup: tf.Tensor2D, tokenInfo: tf.Tensor2D, chunkInfo: tf.Tensor2D,
    attrs: MLAPrefillAttrs): {dq: tf.Tensor3D, dKvBuffer: tf.Tensor3D, dCache: tf.Tensor3D} {
  return tf.tidy(() => {
    const parts = prefillParts(q, kvBuffer, cache, lookup, tokenInfo, chunkInfo, attrs);
    const {qNope, qRope, kNope, value, kRope, slot, probabilities: p, out} = parts;
    const vHeadDim = value.shape[2] as number;
    const ropeDim = qRope.shape[2] as number;
    const [dOut, dLse] = tf.split(tf.transpose(dy, [1, 0, 2]), [vHeadDim, 1], 2);  // [H, T, ·]
    const valueByHead = tf.transpose(value, [1, 0, 2]);                          // [H, rows, V]
    const dValue = tf.matMul(p, dOut, true, false);                              // [H, rows, V]
    const dP = tf.matMul(dOut, valueByHead, false, true);                        // [H, T, rows]
    const rowDot = tf.sum(tf.mul(dOut, out), -1, true);                          // [H, T, 1]
    const dScores = tf.mul(tf.mul(p, tf.add(tf.sub(dP, rowDot), dLse)), attrs.scale);
    const dQNope = tf.matMul(dScores, tf.transpose(kNope, [1, 0, 2]));           // [H, T, N]
    const dKNope = tf.matMul(dScores, tf.transpose(qNope, [1, 0, 2]), true, false);  // [H, rows, N]
    const dQRope = tf.matMul(dScores, kRope);                                    // [H, T, R]
    const qRopeByHead = tf.transpose(qRope, [1, 0, 2]);                          // [H, T, R]
    const dKRope = tf.sum(tf.matMul(dScores, qRopeByHead, true, false), 0);     // [rows, R]
    const dq = tf.transpose(tf.concat([dQNope, dQRope], 2), [1, 0, 2]) as tf.Tensor3D;
    const dKvBuffer = tf.transpose(tf.concat([dKNope, dValue], 2), [1, 0, 2]) as tf.Tensor3D;
    const [numPages, pageSize, rowWidth] = cache.shape;
    const dRows = tf.pad(dKRope, [[0, 0], [rowWidth - ropeDim, 0]]);
    const dCache = tf.reshape(
        tf.scatterND(tf.reshape(slot, [-1, 1]), dRows, [numPages * pageSize, rowWidth]),
        cache.shape) as tf.Tensor3D;
    return {dq, dKvBuffer, dCache};
  });
}
