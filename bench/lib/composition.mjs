// The baseline: the same MLA math written with plain tfjs ops, the way a tfjs user would write
// it without this package (no custom kernel, no paged cache).
//
// Decode: DeepSeek's reference inference code in "absorb" mode (attn_impl = 'absorb' of
//   DeepSeek-V3 inference/model.py) ported to tfjs ops: a dense per-sequence latent cache
//   [B, S, L] and rope-key cache [B, S, R] kept as tensors and grown by tf.concat each step;
//   q_nope absorbed into the latent space with W_UK, scores = q_lat·c_kvᵀ + q_pe·k_peᵀ, softmax,
//   o_lat = P·c_kv, out = W_UV·o_lat. (The non-absorbed alternative would decompress the whole
//   cache with kv_b_proj every step: 2·S·L·H·(N+V) FLOPs, 8.6 GFLOP per sequence and step at a
//   2,048-token context, minutes per step on SwiftShader.)
// Prefill: full causal attention over the whole prompt in "naive" (non-absorbed) form:
//   K = [c_kv·W_UKᵀ | k_pe], V = c_kv·W_UVᵀ per head, scores by a batched matMul over
//   (sequence, head), an additive causal mask, softmax, matMul with V.
// Its rope table is computed here from the spec's YaRN formulas (not taken from the package).
// With q-LoRA weights (q_a_proj, q_a_layernorm, q_b_proj) q is RMSNorm(x·q_aᵀ)·q_bᵀ.
import * as tf from '@tensorflow/tfjs-core';

export const COMPOSITION_DECODE =
    'absorbed attention (DeepSeek reference attn_impl="absorb") over a dense latent cache ' +
    '[B,S,L] + rope-key cache [B,S,R], both grown with tf.concat every step';
export const COMPOSITION_DECODE_NAIVE =
    'non-absorbed attention over the same dense latent cache: the whole cache decompressed with ' +
    'kv_b_proj into per-head K_nope/V every step (measured for batch 1 up to 2,048 tokens)';
export const COMPOSITION_PREFILL =
    'non-absorbed causal attention over the whole prompt: K_nope/V decompressed with ' +
    'kv_b_proj, batched matMul per (sequence, head), additive causal mask, softmax, matMul';

function yarnMscale(scale, mscale) {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** cos and sin tables [maxSeqLen, R/2] (YaRN magnitude included), from spec/MLA.md. */
export function ropeTables(cfg, maxSeqLen) {
  const R = cfg.qkRopeHeadDim;
  const half = R / 2;
  const invFreq = new Float64Array(half);
  let magnitude = 1;
  const y = cfg.yarn;
  if (y) {
    const corr = (n) => R * Math.log(y.originalMaxPositionEmbeddings / (n * 2 * Math.PI)) /
        (2 * Math.log(Math.trunc(cfg.ropeTheta)));
    const low = Math.max(Math.floor(corr(y.betaFast)), 0);
    let high = Math.min(Math.trunc(corr(y.betaSlow)) + 1, R - 1);
    if (high === low) high += 0.001;
    for (let i = 0; i < half; i++) {
      const base = Math.pow(cfg.ropeTheta, 2 * i / R);
      const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
      invFreq[i] = ramp / (y.scalingFactor * base) + (1 - ramp) / base;
    }
    magnitude = yarnMscale(y.scalingFactor, y.mscale) / yarnMscale(y.scalingFactor, y.mscaleAllDim);
  } else {
    for (let i = 0; i < half; i++) invFreq[i] = Math.pow(cfg.ropeTheta, -2 * i / R);
  }
  const cos = new Float32Array(maxSeqLen * half);
  const sin = new Float32Array(maxSeqLen * half);
  for (let p = 0; p < maxSeqLen; p++) {
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p * invFreq[i]) * magnitude;
      sin[p * half + i] = Math.sin(p * invFreq[i]) * magnitude;
    }
  }
  return {cos, sin};
}

/** λ: (N+R)^−0.5 times the YaRN mscale² (spec/MLA.md). */
export function softmaxScale(cfg) {
  const base = 1 / Math.sqrt(cfg.qkNopeHeadDim + cfg.qkRopeHeadDim);
  const m = cfg.yarn ? yarnMscale(cfg.yarn.scalingFactor, cfg.yarn.mscale) : 1;
  return base * m * m;
}

export class Composition {
  /**
   * @param cfg     model sizes (numHeads, hiddenSize, kvLoraRank, qkNopeHeadDim, qkRopeHeadDim,
   *                vHeadDim, ropeTheta, yarn, rmsNormEps)
   * @param weights HF state dict (the same tensors the layer loaded)
   */
  constructor(cfg, weights, maxSeqLen) {
    this.cfg = cfg;
    this.w = weights;
    this.scale = softmaxScale(cfg);
    const {numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, vHeadDim: V} = cfg;
    const {cos, sin} = ropeTables(cfg, maxSeqLen);
    this.cos = tf.tensor2d(cos, [maxSeqLen, cfg.qkRopeHeadDim / 2]);
    this.sin = tf.tensor2d(sin, [maxSeqLen, cfg.qkRopeHeadDim / 2]);
    // Derived once, as a user would: W_UK [H, N, L] and W_UV [H, L, V] from kv_b_proj.
    [this.wUk, this.wUv] = tf.tidy(() => {
      const perHead = tf.reshape(weights['kv_b_proj.weight'], [H, N + V, L]);
      const [uk, uv] = tf.split(perHead, [N, V], 1);
      return [tf.keep(uk), tf.keep(tf.transpose(uv, [0, 2, 1]))];
    });
  }

  dispose() {
    tf.dispose([this.cos, this.sin, this.wUk, this.wUv]);
  }

  /** Interleaved-pair RoPE of x [..., R] with cos/sin broadcastable to [..., R/2, 1]. */
  rope(x, cos, sin) {
    const R = this.cfg.qkRopeHeadDim;
    const pairs = tf.reshape(x, [...x.shape.slice(0, -1), R / 2, 2]);
    const [x0, x1] = tf.split(pairs, 2, -1);
    const y0 = tf.sub(tf.mul(x0, cos), tf.mul(x1, sin));
    const y1 = tf.add(tf.mul(x0, sin), tf.mul(x1, cos));
    return tf.reshape(tf.concat([y0, y1], -1), x.shape);
  }

  /** q before the head split: x·q_projᵀ, or with q-LoRA RMSNorm(x·q_a_projᵀ)·q_b_projᵀ. */
  projectQ(x) {
    if (this.w['q_proj.weight']) return tf.matMul(x, this.w['q_proj.weight'], false, true);
    const qA = tf.matMul(x, this.w['q_a_proj.weight'], false, true);
    return tf.matMul(this.rmsNorm(qA, this.w['q_a_layernorm.weight']), this.w['q_b_proj.weight'], false, true);
  }

  rmsNorm(x, gamma) {
    const inverseRms = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), this.cfg.rmsNormEps));
    return tf.mul(tf.mul(x, inverseRms), gamma);
  }

  /**
   * One decode step: x [B, hidden] (one new token per sequence, at position `positions[b]`),
   * caches ckv [B, S0, L] and kpe [B, S0, R]. Returns {y [B, hidden], ckv, kpe} with the
   * caches grown by one row (new tensors; the caller disposes the old ones).
   */
  decode(x, ckvCache, kpeCache, positions) {
    const {numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = this.cfg;
    const B = x.shape[0];
    return tf.tidy(() => {
      const pos = tf.tensor1d(positions, 'int32');
      const cos = tf.gather(this.cos, pos);  // [B, R/2]
      const sin = tf.gather(this.sin, pos);
      const q = tf.reshape(this.projectQ(x), [B, H, N + R]);
      const [qNope, qPeRaw] = tf.split(q, [N, R], 2);
      const qPe = this.rope(qPeRaw, tf.reshape(cos, [B, 1, R / 2, 1]), tf.reshape(sin, [B, 1, R / 2, 1]));
      const kv = tf.matMul(x, this.w['kv_a_proj_with_mqa.weight'], false, true);  // [B, L + R]
      const [cRaw, kPeRaw] = tf.split(kv, [L, R], 1);
      const c = this.rmsNorm(cRaw, this.w['kv_a_layernorm.weight']);
      const kPe = this.rope(kPeRaw, tf.reshape(cos, [B, R / 2, 1]), tf.reshape(sin, [B, R / 2, 1]));
      const ckv = tf.concat([ckvCache, tf.reshape(c, [B, 1, L])], 1);  // [B, S, L]
      const kpe = tf.concat([kpeCache, tf.reshape(kPe, [B, 1, R])], 1);  // [B, S, R]
      // q_lat[b, h] = W_UK[h]ᵀ · q_nope[b, h]
      const qLat = tf.transpose(tf.matMul(tf.transpose(qNope, [1, 0, 2]), this.wUk), [1, 0, 2]);  // [B, H, L]
      const scores = tf.mul(tf.add(tf.matMul(qLat, ckv, false, true), tf.matMul(qPe, kpe, false, true)),
                            this.scale);  // [B, H, S]
      const p = tf.softmax(scores);
      const oLat = tf.matMul(p, ckv);  // [B, H, L]
      const o = tf.transpose(tf.matMul(tf.transpose(oLat, [1, 0, 2]), this.wUv), [1, 0, 2]);  // [B, H, V]
      const y = tf.matMul(tf.reshape(o, [B, H * V]), this.w['o_proj.weight'], false, true);
      return {y, ckv, kpe};
    });
  }

  /**
   * The same decode step without absorption (the secondary, naive baseline): the whole latent
   * cache is decompressed with kv_b_proj into per-head K_nope and V every step, then standard
   * attention of the 192-wide query over [K_nope | k_pe] and P·V.
   */
  decodeNaive(x, ckvCache, kpeCache, positions) {
    const {numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = this.cfg;
    const B = x.shape[0];
    return tf.tidy(() => {
      const pos = tf.tensor1d(positions, 'int32');
      const cos = tf.gather(this.cos, pos);
      const sin = tf.gather(this.sin, pos);
      const q = tf.reshape(this.projectQ(x), [B, H, N + R]);
      const [qNope, qPeRaw] = tf.split(q, [N, R], 2);
      const qPe = this.rope(qPeRaw, tf.reshape(cos, [B, 1, R / 2, 1]), tf.reshape(sin, [B, 1, R / 2, 1]));
      const kv = tf.matMul(x, this.w['kv_a_proj_with_mqa.weight'], false, true);
      const [cRaw, kPeRaw] = tf.split(kv, [L, R], 1);
      const c = this.rmsNorm(cRaw, this.w['kv_a_layernorm.weight']);
      const kPe = this.rope(kPeRaw, tf.reshape(cos, [B, R / 2, 1]), tf.reshape(sin, [B, R / 2, 1]));
      const ckv = tf.concat([ckvCache, tf.reshape(c, [B, 1, L])], 1);
      const kpe = tf.concat([kpeCache, tf.reshape(kPe, [B, 1, R])], 1);
      const S = ckv.shape[1];
      const kvd = tf.reshape(tf.matMul(tf.reshape(ckv, [B * S, L]), this.w['kv_b_proj.weight'], false, true),
                             [B, S, H, N + V]);
      const [kNope, v] = tf.split(kvd, [N, V], 3);
      const k = tf.concat([kNope, tf.broadcastTo(tf.reshape(kpe, [B, S, 1, R]), [B, S, H, R])], 3);
      const heads = (t, d) => tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [B * H, S, d]);
      const qFull = tf.reshape(tf.concat([qNope, qPe], 2), [B * H, 1, N + R]);
      const p = tf.softmax(tf.mul(tf.matMul(qFull, heads(k, N + R), false, true), this.scale));  // [B·H, 1, S]
      const o = tf.reshape(tf.matMul(p, heads(v, V)), [B, H * V]);
      const y = tf.matMul(o, this.w['o_proj.weight'], false, true);
      return {y, ckv, kpe};
    });
  }

  /**
   * Prefill of B prompts of T tokens each (positions 0..T−1): x [B·T, hidden], rows of
   * sequence b at [b·T, (b+1)·T). Returns {y [B·T, hidden], ckv [B, T, L], kpe [B, T, R]}.
   */
  prefill(x, B, T) {
    const {numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = this.cfg;
    return tf.tidy(() => {
      const cos = tf.slice(this.cos, [0, 0], [T, R / 2]);
      const sin = tf.slice(this.sin, [0, 0], [T, R / 2]);
      const q = tf.reshape(this.projectQ(x), [B, T, H, N + R]);
      const [qNope, qPeRaw] = tf.split(q, [N, R], 3);
      const qPe = this.rope(qPeRaw, tf.reshape(cos, [1, T, 1, R / 2, 1]), tf.reshape(sin, [1, T, 1, R / 2, 1]));
      const kv = tf.matMul(x, this.w['kv_a_proj_with_mqa.weight'], false, true);  // [B·T, L + R]
      const [cRaw, kPeRaw] = tf.split(kv, [L, R], 1);
      const c = this.rmsNorm(cRaw, this.w['kv_a_layernorm.weight']);  // [B·T, L]
      const kPe = this.rope(tf.reshape(kPeRaw, [B, T, R]), tf.reshape(cos, [1, T, R / 2, 1]),
                            tf.reshape(sin, [1, T, R / 2, 1]));  // [B, T, R]
      const kvd = tf.reshape(tf.matMul(c, this.w['kv_b_proj.weight'], false, true), [B, T, H, N + V]);
      const [kNope, v] = tf.split(kvd, [N, V], 3);
      const k = tf.concat([kNope, tf.broadcastTo(tf.reshape(kPe, [B, T, 1, R]), [B, T, H, R])], 3);
      const qFull = tf.concat([qNope, qPe], 3);
      const heads = (t, d) => tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [B * H, T, d]);
      const lower = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
      const mask = tf.mul(tf.sub(1, lower), -1e9);  // 0 where key ≤ query, −1e9 above
      const scores = tf.add(tf.mul(tf.matMul(heads(qFull, N + R), heads(k, N + R), false, true), this.scale),
                            mask);  // [B·H, T, T]
      const p = tf.softmax(scores);
      const o = tf.matMul(p, heads(v, V));  // [B·H, T, V]
      const merged = tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, V]), [0, 2, 1, 3]), [B * T, H * V]);
      const y = tf.matMul(merged, this.w['o_proj.weight'], false, true);
      return {y, ckv: tf.reshape(c, [B, T, L]), kpe: kPe};
    });
  }
}
