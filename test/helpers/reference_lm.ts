/**
 * A plain float64 reference causal LM for the MLA architectures tfjs-mla/models loads: HF
 * `model_type` `youtu` (YoutuForCausalLM) and `deepseek_v2` / `deepseek_v3` with dense layers
 * (DeepseekV2/V3ForCausalLM). Written from Hugging Face transformers' semantics with eager
 * attention, NOT the absorbed form: per head q = [q_nope | q_pe], k = [k_nope (kv_b_proj) |
 * k_pe (one rope key shared by all heads)], v from kv_b_proj, a full causal softmax over the
 * positions 0..T−1 of one fresh sequence. It is the oracle for checkpoints the tests write
 * themselves (test/helpers/lm_checkpoints.ts); test/node/reference_lm.spec.ts checks it against
 * test/fixtures/tiny_mla_lm (logits from DeepSeek's own code).
 *
 * Imports nothing from src/: the semantics below are read off HF transformers
 * (models/youtu/modeling_youtu.py, models/deepseek_v3/modeling_deepseek_v3.py,
 * models/deepseek_v2/modeling_deepseek_v2.py, modeling_rope_utils.py and the configs):
 *
 * - RMSNorm(x; w, eps) = x / sqrt(mean(x²) + eps) · w. Decoder norms (input_layernorm,
 *   post_attention_layernorm, model.norm) use rms_norm_eps; q_a_layernorm and kv_a_layernorm
 *   are built without an eps argument, so 1e-6.
 * - Decoder layer: x += o_proj(MLA(input_layernorm(x))); x += down(silu(gate(h)) · up(h)) with
 *   h = post_attention_layernorm(x). logits = lm_head(norm(x)), or embed_tokens when tied
 *   (tie_word_embeddings; when absent YoutuConfig defaults to true, the DeepSeek configs to false).
 * - q = q_b_proj(q_a_layernorm(q_a_proj(h))) with q_lora_rank, else q_proj(h); per head
 *   [q_nope (qk_nope_head_dim) | q_pe (qk_rope_head_dim)]. kv_a_proj_with_mqa(h) =
 *   [latent (kv_lora_rank) | k_pe (qk_rope_head_dim)]; kv_b_proj(kv_a_layernorm(latent)) per head
 *   [k_nope (qk_nope_head_dim) | v (v_head_dim)].
 * - Rope over qk_rope_head_dim = R dims (HF's config.head_dim for these models). inv_freq_i,
 *   i < R/2; cos_i = cos(p·inv_freq_i)·attention_factor, sin likewise.
 *   rope_interleave true (the default; DeepseekV2 always, through its complex rope): the dims
 *   are read as pairs (x₂ᵢ, x₂ᵢ₊₁) — HF permutes them to halves [x₀, x₂, …, x₁, x₃, …] and applies
 *   rotate_half, so out_i = x₂ᵢ·cᵢ − x₂ᵢ₊₁·sᵢ and out_{i+R/2} = x₂ᵢ₊₁·cᵢ + x₂ᵢ·sᵢ (in the permuted
 *   layout, for q and k alike: the scores are those of DeepSeek's pair rotation).
 *   rope_interleave false: halves as they are, out_i = xᵢ·cᵢ − x_{i+R/2}·sᵢ,
 *   out_{i+R/2} = x_{i+R/2}·cᵢ + xᵢ·sᵢ.
 * - Rope parameters: `rope_scaling` when truthy, else `rope_parameters` (HF: `rope_scaling or
 *   rope_parameters`); rope_theta from that dict, else the top-level `rope_theta` (missing in
 *   both: an Error here, where HF would silently use 10000); rope_type from `rope_type`, else
 *   `type`, else 'default'. Default: inv_freq_i = θ^(−2i/R), attention_factor 1.
 *   YaRN (`_compute_yarn_parameters`): factor (null → max_position_embeddings /
 *   original_max_position_embeddings), original_max_position_embeddings (absent →
 *   max_position_embeddings), beta_fast (falsy → 32), beta_slow (falsy → 1), truncate (true);
 *   corr(n) = R·ln(orig / (n·2π)) / (2·ln θ), low = max(floor(corr(beta_fast)), 0),
 *   high = min(ceil(corr(beta_slow)), R − 1) (no floor/ceil when truncate is false),
 *   high += 0.001 when equal, ramp_i = clamp((i − low)/(high − low), 0, 1),
 *   inv_freq_i = ramp_i/(factor·θ^(2i/R)) + (1 − ramp_i)/θ^(2i/R);
 *   attention_factor = the config's attention_factor if given, else g(factor, mscale) /
 *   g(factor, mscale_all_dim) when both are set and non-zero, else g(factor, 1), with
 *   g(s, m) = 0.1·m·ln(s) + 1 for s > 1, else 1.
 * - Softmax scale (DeepseekV3Attention / YoutuAttention): (qk_nope + qk_rope)^−0.5, times
 *   g(factor, mscale_all_dim)² when the rope is not 'default' and mscale_all_dim is non-zero.
 *   Applied to deepseek_v2 too: DeepSeek's own DeepSeek-V2 code does so (transformers'
 *   DeepseekV2Attention leaves it out; no official V2 config disagrees with V3's rule).
 * - MoE layers (a routed layer: n_routed_experts set, layer ≥ first_k_dense_replace and
 *   layer % moe_layer_freq == 0) are not implemented: an Error.
 */

/** One weight: row-major values, HF/PyTorch layout ([out, in] for projections). */
export interface RefTensor {
  shape: readonly number[];
  values: ArrayLike<number>;
}

/** Weights by their HF names, e.g. 'model.layers.0.self_attn.q_a_proj.weight'. */
export type RefWeights = ReadonlyMap<string, RefTensor>;

/** An HF config.json, as parsed. */
export type HFConfig = Record<string, unknown>;

/** What the reference resolved from a config (for tests that want to see the rope). */
export interface ReferenceSettings {
  modelType: 'youtu'|'deepseek_v2'|'deepseek_v3';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  qLoraRank: number|null;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  rmsNormEps: number;
  tied: boolean;
  interleave: boolean;
  ropeType: 'default'|'yarn';
  ropeTheta: number;
  /** [R/2] */
  invFreq: Float64Array;
  /** Multiplies cos and sin. */
  attentionFactor: number;
  softmaxScale: number;
  /** Layer indices whose MLP is routed (MoE); the reference rejects them in referenceLogits. */
  moeLayers: number[];
}

/** The eps of q_a_layernorm and kv_a_layernorm (HF builds them without an eps argument). */
export const LATENT_NORM_EPS = 1e-6;

/** YaRN's g(s, m): 0.1·m·ln(s) + 1 for s > 1, else 1. */
export function yarnGetMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function int(config: HFConfig, key: string): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new Error(`referenceLM: config.${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(dict: Record<string, unknown>, key: string, where: string): number {
  const v = dict[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new Error(`referenceLM: ${where}.${key} must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** dict[key] when it is a number, else undefined (null and absent alike). */
function optNum(dict: Record<string, unknown>, key: string, where: string): number|undefined {
  const v = dict[key];
  if (v === undefined || v === null) return undefined;
  return num(dict, key, where);
}

/** Resolves the config the way HF's config classes and modules read it. */
export function referenceSettings(config: HFConfig): ReferenceSettings {
  const modelType = config.model_type;
  if (modelType !== 'youtu' && modelType !== 'deepseek_v2' && modelType !== 'deepseek_v3') {
    throw new Error(`referenceLM: model_type ${JSON.stringify(modelType)} is not youtu, deepseek_v2 or deepseek_v3`);
  }
  const qkNopeHeadDim = int(config, 'qk_nope_head_dim');
  const qkRopeHeadDim = int(config, 'qk_rope_head_dim');
  if (qkRopeHeadDim % 2 !== 0) throw new Error(`referenceLM: qk_rope_head_dim ${qkRopeHeadDim} is odd`);
  const numLayers = int(config, 'num_hidden_layers');
  const qLora = config.q_lora_rank;
  if (qLora === undefined) {
    // HF's config classes would default it to 1536; a checkpoint's config always says.
    throw new Error('referenceLM: config.q_lora_rank is missing (null for no q-LoRA)');
  }
  const tieKey = config.tie_word_embeddings;
  const tied = tieKey === undefined ? modelType === 'youtu' : tieKey === true;

  // ---- rope --------------------------------------------------------------------------------
  const scaling = config.rope_scaling;
  const params = config.rope_parameters;
  const rp: Record<string, unknown> = isObject(scaling) && Object.keys(scaling).length > 0 ? scaling :
    isObject(params) ? params : {};
  const where = rp === scaling ? 'rope_scaling' : 'rope_parameters';
  const ropeTheta = optNum(rp, 'rope_theta', where) ?? optNum(config, 'rope_theta', 'config');
  if (ropeTheta === undefined) throw new Error('referenceLM: no rope_theta (top-level or in rope_parameters)');
  const typeName = rp.rope_type ?? rp.type ?? 'default';
  if (typeName !== 'default' && typeName !== 'yarn') {
    throw new Error(`referenceLM: rope type ${JSON.stringify(typeName)} is not 'default' or 'yarn'`);
  }
  const ropeType = typeName;
  const R = qkRopeHeadDim;
  const half = R / 2;
  const invFreq = new Float64Array(half);
  let attentionFactor = 1;
  let softmaxScale = (qkNopeHeadDim + qkRopeHeadDim) ** -0.5;
  if (ropeType === 'default') {
    for (let i = 0; i < half; i++) invFreq[i] = 1 / ropeTheta ** ((2 * i) / R);
  } else {
    const maxPos = int(config, 'max_position_embeddings');
    const orig = optNum(rp, 'original_max_position_embeddings', where) ?? maxPos;
    const factor = optNum(rp, 'factor', where) ?? maxPos / orig;
    const mscale = optNum(rp, 'mscale', where);
    const mscaleAllDim = optNum(rp, 'mscale_all_dim', where);
    const givenAttentionFactor = optNum(rp, 'attention_factor', where);
    attentionFactor = givenAttentionFactor ?? (mscale && mscaleAllDim ?
      yarnGetMscale(factor, mscale) / yarnGetMscale(factor, mscaleAllDim) : yarnGetMscale(factor));
    const betaFast = optNum(rp, 'beta_fast', where) || 32;
    const betaSlow = optNum(rp, 'beta_slow', where) || 1;
    const truncate = rp.truncate === undefined || rp.truncate === null ? true : rp.truncate === true;
    const correctionDim = (rotations: number) =>
      (R * Math.log(orig / (rotations * 2 * Math.PI))) / (2 * Math.log(ropeTheta));
    let low = correctionDim(betaFast);
    let high = correctionDim(betaSlow);
    if (truncate) {
      low = Math.floor(low);
      high = Math.ceil(high);
    }
    low = Math.max(low, 0);
    high = Math.min(high, R - 1);
    if (low === high) high += 0.001;
    for (let i = 0; i < half; i++) {
      const posFreq = ropeTheta ** ((2 * i) / R);
      const extrapolation = 1 / posFreq;
      const interpolation = 1 / (factor * posFreq);
      const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
      const extrapolationFactor = 1 - ramp;
      invFreq[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
    }
    if (mscaleAllDim) softmaxScale *= yarnGetMscale(factor, mscaleAllDim) ** 2;
  }
  // DeepseekV2's rope is always the pair (complex) rotation; the others read rope_interleave.
  const interleave = modelType === 'deepseek_v2' ? true : config.rope_interleave !== false;

  // ---- routed layers (DeepSeek's rule; youtu has none) -------------------------------------
  const moeLayers: number[] = [];
  if (modelType !== 'youtu') {
    const experts = config.n_routed_experts;
    if (experts !== undefined && experts !== null) {
      const firstDense = typeof config.first_k_dense_replace === 'number' ? config.first_k_dense_replace : 0;
      const freq = typeof config.moe_layer_freq === 'number' ? config.moe_layer_freq : 1;
      for (let l = 0; l < numLayers; l++) if (l >= firstDense && l % freq === 0) moeLayers.push(l);
    }
  }

  return {
    modelType, vocabSize: int(config, 'vocab_size'), hiddenSize: int(config, 'hidden_size'),
    intermediateSize: int(config, 'intermediate_size'), numLayers,
    numHeads: int(config, 'num_attention_heads'),
    qLoraRank: qLora === null ? null : int(config, 'q_lora_rank'), kvLoraRank: int(config, 'kv_lora_rank'),
    qkNopeHeadDim, qkRopeHeadDim, vHeadDim: int(config, 'v_head_dim'),
    rmsNormEps: num(config, 'rms_norm_eps', 'config'), tied, interleave, ropeType, ropeTheta, invFreq,
    attentionFactor, softmaxScale, moeLayers,
  };
}

// ---- plain float64 algebra ---------------------------------------------------------------

function weight(weights: RefWeights, name: string, shape: number[]): ArrayLike<number> {
  const w = weights.get(name);
  if (w === undefined) throw new Error(`referenceLM: weight '${name}' is missing`);
  if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`referenceLM: weight '${name}' has shape [${w.shape}], expected [${shape}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (w.values.length !== count) throw new Error(`referenceLM: weight '${name}' has ${w.values.length} values, expected ${count}`);
  return w.values;
}

/** y = W·x for W [out, in] row-major. */
function linear(w: ArrayLike<number>, x: Float64Array, out: number): Float64Array {
  const inDim = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    const row = o * inDim;
    for (let i = 0; i < inDim; i++) s += w[row + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] * r * w[i];
  return y;
}

function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** HF's rope on one R-dim vector at position p (the output in HF's layout, see the header). */
function applyRope(x: Float64Array, p: number, s: ReferenceSettings): Float64Array {
  const R = x.length;
  const half = R / 2;
  // HF's interleave: view (R/2, 2), transpose → [x0, x2, …, x1, x3, …]; then rotate_half as usual.
  const u = new Float64Array(R);
  if (s.interleave) {
    for (let i = 0; i < half; i++) {
      u[i] = x[2 * i];
      u[i + half] = x[2 * i + 1];
    }
  } else {
    u.set(x);
  }
  const y = new Float64Array(R);
  for (let i = 0; i < half; i++) {
    const angle = p * s.invFreq[i];
    const c = Math.cos(angle) * s.attentionFactor;
    const sn = Math.sin(angle) * s.attentionFactor;
    // cos = cat(c, c), sin = cat(s, s); rotate_half(u) = cat(−u[half:], u[:half])
    y[i] = u[i] * c - u[i + half] * sn;
    y[i + half] = u[i + half] * c + u[i] * sn;
  }
  return y;
}

/**
 * The logits of every position of `ids` (one fresh sequence at positions 0..T−1), float64,
 * flat [T × vocab] row-major: row t is the distribution of token t+1.
 */
export function referenceLogits(config: HFConfig, weights: RefWeights, ids: readonly number[]): Float64Array {
  const s = referenceSettings(config);
  if (s.moeLayers.length > 0) {
    throw new Error(`referenceLM: layers [${s.moeLayers}] are routed (MoE); the reference has dense layers only`);
  }
  const T = ids.length;
  const {hiddenSize: D, vocabSize, numHeads: H, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V,
         kvLoraRank: L, intermediateSize: I} = s;
  const embed = weight(weights, 'model.embed_tokens.weight', [vocabSize, D]);
  const x: Float64Array[] = ids.map((id) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new Error(`referenceLM: token id ${id} out of range`);
    return Float64Array.from({length: D}, (_, i) => embed[id * D + i]);
  });

  for (let l = 0; l < s.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const inNorm = weight(weights, `${p}input_layernorm.weight`, [D]);
    const postNorm = weight(weights, `${p}post_attention_layernorm.weight`, [D]);
    const qA = s.qLoraRank === null ? null : weight(weights, `${p}self_attn.q_a_proj.weight`, [s.qLoraRank, D]);
    const qANorm = s.qLoraRank === null ? null : weight(weights, `${p}self_attn.q_a_layernorm.weight`, [s.qLoraRank]);
    const qB = s.qLoraRank === null ? null : weight(weights, `${p}self_attn.q_b_proj.weight`, [H * (N + R), s.qLoraRank]);
    const qProj = s.qLoraRank === null ? weight(weights, `${p}self_attn.q_proj.weight`, [H * (N + R), D]) : null;
    const kvA = weight(weights, `${p}self_attn.kv_a_proj_with_mqa.weight`, [L + R, D]);
    const kvANorm = weight(weights, `${p}self_attn.kv_a_layernorm.weight`, [L]);
    const kvB = weight(weights, `${p}self_attn.kv_b_proj.weight`, [H * (N + V), L]);
    const oProj = weight(weights, `${p}self_attn.o_proj.weight`, [D, H * V]);
    const gate = weight(weights, `${p}mlp.gate_proj.weight`, [I, D]);
    const up = weight(weights, `${p}mlp.up_proj.weight`, [I, D]);
    const down = weight(weights, `${p}mlp.down_proj.weight`, [D, I]);

    // Per token: queries [H][N+R] (rope applied), keys [H][N+R] (k_pe shared), values [H][V].
    const queries: Float64Array[][] = [];
    const keys: Float64Array[][] = [];
    const values: Float64Array[][] = [];
    for (let t = 0; t < T; t++) {
      const h = rmsNorm(x[t], inNorm, s.rmsNormEps);
      const q = qProj !== null ? linear(qProj, h, H * (N + R)) :
        linear(qB!, rmsNorm(linear(qA!, h, s.qLoraRank!), qANorm!, LATENT_NORM_EPS), H * (N + R));
      const kv = linear(kvA, h, L + R);
      const latent = rmsNorm(kv.subarray(0, L), kvANorm, LATENT_NORM_EPS);
      const kPe = applyRope(kv.slice(L, L + R), t, s);
      const kvUp = linear(kvB, latent, H * (N + V));
      const qt: Float64Array[] = [];
      const kt: Float64Array[] = [];
      const vt: Float64Array[] = [];
      for (let hd = 0; hd < H; hd++) {
        const qh = new Float64Array(N + R);
        qh.set(q.subarray(hd * (N + R), hd * (N + R) + N));
        qh.set(applyRope(q.slice(hd * (N + R) + N, (hd + 1) * (N + R)), t, s), N);
        const kh = new Float64Array(N + R);
        kh.set(kvUp.subarray(hd * (N + V), hd * (N + V) + N));
        kh.set(kPe, N);
        qt.push(qh);
        kt.push(kh);
        vt.push(kvUp.slice(hd * (N + V) + N, (hd + 1) * (N + V)));
      }
      queries.push(qt);
      keys.push(kt);
      values.push(vt);
    }

    for (let t = 0; t < T; t++) {
      const attn = new Float64Array(H * V);
      for (let hd = 0; hd < H; hd++) {
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let u = 0; u <= t; u++) {
          let dot = 0;
          const qv = queries[t][hd];
          const kv = keys[u][hd];
          for (let d = 0; d < N + R; d++) dot += qv[d] * kv[d];
          scores[u] = dot * s.softmaxScale;
          max = Math.max(max, scores[u]);
        }
        let sum = 0;
        for (let u = 0; u <= t; u++) {
          scores[u] = Math.exp(scores[u] - max);
          sum += scores[u];
        }
        for (let u = 0; u <= t; u++) {
          const pr = scores[u] / sum;
          const vv = values[u][hd];
          for (let e = 0; e < V; e++) attn[hd * V + e] += pr * vv[e];
        }
      }
      const o = linear(oProj, attn, D);
      for (let i = 0; i < D; i++) x[t][i] += o[i];
    }

    for (let t = 0; t < T; t++) {
      const h = rmsNorm(x[t], postNorm, s.rmsNormEps);
      const g = linear(gate, h, I);
      const u = linear(up, h, I);
      for (let i = 0; i < I; i++) g[i] = silu(g[i]) * u[i];
      const y = linear(down, g, D);
      for (let i = 0; i < D; i++) x[t][i] += y[i];
    }
  }

  const finalNorm = weight(weights, 'model.norm.weight', [D]);
  const head = s.tied ? embed : weight(weights, 'lm_head.weight', [vocabSize, D]);
  const logits = new Float64Array(T * vocabSize);
  for (let t = 0; t < T; t++) logits.set(linear(head, rmsNorm(x[t], finalNorm, s.rmsNormEps), vocabSize), t * vocabSize);
  return logits;
}

/** argmax of row `row` of a [rows × vocab] array (the first index on ties). */
export function argmaxRow(logits: ArrayLike<number>, vocab: number, row: number): number {
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[row * vocab + i] > logits[row * vocab + best]) best = i;
  return best;
}

/**
 * Greedy decoding (temperature 0) by full recomputation of prompt + tokens at every step: the
 * new tokens (stopping after a stop token, which is included, as HF's generate keeps it) and
 * the logits row each was chosen from.
 */
export function referenceGreedy(config: HFConfig, weights: RefWeights, prompt: readonly number[],
                                maxNewTokens: number, stopTokens: readonly number[] = []):
    {tokens: number[], logits: Float64Array[]} {
  const vocab = referenceSettings(config).vocabSize;
  const tokens: number[] = [];
  const rows: Float64Array[] = [];
  for (let k = 0; k < maxNewTokens; k++) {
    const seq = [...prompt, ...tokens];
    const all = referenceLogits(config, weights, seq);
    const row = all.slice((seq.length - 1) * vocab, seq.length * vocab);
    const next = argmaxRow(row, vocab, 0);
    tokens.push(next);
    rows.push(row);
    if (stopTokens.includes(next)) break;
  }
  return {tokens, logits: rows};
}
