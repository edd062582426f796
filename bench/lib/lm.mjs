// The model case: a whole causal LM through the public API of `tfjs-mla/models`
// (CausalLM.fromStateDict, generate), at the full width of Youtu-LLM-2B with a few layers and
// random weights made on the device (no checkpoint file). It measures time to first token
// (the prefill of a P-token prompt until the first new token is known) and decode tokens/s
// over N steps, for stacks of 1 and 2 layers in the same run, so that the per-layer cost and
// the fixed cost (embedding lookup, final norm, the 128,256 × 2,048 head, sampling, read-back)
// come out as a slope and an intercept, and the 32-layer model's numbers as an extrapolation.
import * as tf from '@tensorflow/tfjs-core';
import {mlaPackHalf, PackedHalfTensor} from '../../dist/index.js';
import {prng} from '../../demos/common/helpers.mjs';
import {median, now, sync} from './timing.mjs';
import {run, uniformFillProgram, uniformFillUniforms} from './webgpu_programs.mjs';

/**
 * Youtu-LLM-2B (HF model_type `youtu`, tencent/Youtu-LLM-2B) as a config.json object. Sizes:
 * the defaults of Hugging Face transformers' YoutuConfig, which its docstring calls "a
 * Youtu-LLM-2B style configuration" (src/transformers/models/youtu/configuration_youtu.py at
 * huggingface/transformers 008e574391258935f3ecc3035c882e73bbcac419): vocab 128,256, hidden
 * 2,048, intermediate_size 6,144, 32 layers, 16 heads (16 kv heads), q_lora_rank 1,536,
 * kv_lora_rank 512, qk_nope 128, qk_rope 64, v 128, SiLU, tie_word_embeddings true (no
 * lm_head.weight: the head is embed_tokens). rope θ 1.6e6 as in the released config (the
 * class default leaves rope_parameters unset); interleaved rope, no rope scaling.
 * 32 × 53.0 M (attention 15.3 M + MLP 37.7 M) + 262.7 M embedding ≈ 1.96 B parameters.
 */
export const YOUTU_2B = Object.freeze({
  architectures: ['YoutuForCausalLM'],
  model_type: 'youtu',
  vocab_size: 128256,
  hidden_size: 2048,
  intermediate_size: 6144,
  num_hidden_layers: 32,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  q_lora_rank: 1536,
  kv_lora_rank: 512,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  head_dim: 64,
  qk_head_dim: 192,
  hidden_act: 'silu',
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-6,
  rope_theta: 1.6e6,
  rope_scaling: null,
  rope_interleave: true,
  attention_bias: false,
  tie_word_embeddings: true,
  bos_token_id: 128000,
  eos_token_id: 128001,
  torch_dtype: 'bfloat16',
});

/** The same structure at the sizes of test/fixtures/tiny_mla_lm (--tiny: checks the harness). */
export const TINY_LM = Object.freeze({
  ...YOUTU_2B,
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 160,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  q_lora_rank: 48,
  kv_lora_rank: 32,
  qk_nope_head_dim: 16,
  qk_rope_head_dim: 8,
  v_head_dim: 16,
  head_dim: 8,
  qk_head_dim: 24,
  max_position_embeddings: 256,
  bos_token_id: 1,
  eos_token_id: 2,
});

const SHORT = {float32: 'f32', bfloat16: 'bf16', float16: 'f16', float8_e4m3fn: 'fp8'};

/**
 * The cases (ids `model-<dtype>[-b<B>]`): bf16 weights and cache at batch 1 (time to first
 * token of a 128-token prompt and 8 decode steps; the one of a full run, about 2.5 minutes on
 * SwiftShader), bf16 at batch 4 (decode throughput; 16-token prompts so that its prefill stays
 * small; with `--only model`), and float32 weights and cache at batch 1 (a 1.05 GB embedding:
 * it fits SwiftShader's 1 GiB binding limit; only as `--only model-f32`). --tiny runs all three
 * at the fixture's sizes; --quick a 32-token prompt and 4 steps; --backend cpu none unless named.
 */
export function modelCases({tiny = false, quick = false, backend = 'webgpu'} = {}) {
  const P = tiny ? 16 : quick ? 32 : 128;
  const N = tiny ? 4 : quick ? 4 : 8;
  const reps = quick || tiny ? 2 : 3;
  const make = (dtype, B, promptTokens, extra = {}) => ({
    kind: 'model', id: `model-${SHORT[dtype]}${B > 1 ? `-b${B}` : ''}`,
    name: `model ${tiny ? 'tiny' : 'Youtu-2B-shaped'} ${SHORT[dtype]} B=${B} P=${promptTokens}`,
    dtype, cacheDtype: dtype, B, promptTokens, newTokens: N, reps, defaultRun: true, groups: ['model'], ...extra,
  });
  return [
    // On the cpu backend the full-width case (minutes of JavaScript matMuls) only by its id.
    make('bfloat16', 1, P, {defaultRun: tiny || backend !== 'cpu'}),
    make('bfloat16', 4, tiny ? 8 : 16, {defaultRun: tiny}),
    make('float32', 1, P, {defaultRun: tiny, groups: []}),
  ];
}

export const modelDescription = (hf) =>
    `a causal LM built by CausalLM.fromStateDict (tfjs-mla/models) from a ${hf === TINY_LM ? 'tiny youtu' :
      'Youtu-LLM-2B'} config.json (hidden ${hf.hidden_size}, ${hf.num_attention_heads} heads, q_lora ` +
    `${hf.q_lora_rank}, kv_lora ${hf.kv_lora_rank}, nope ${hf.qk_nope_head_dim}, rope ${hf.qk_rope_head_dim}, v ` +
    `${hf.v_head_dim}, intermediate ${hf.intermediate_size}, vocab ${hf.vocab_size}, tied head) with ` +
    'num_hidden_layers set to each stack depth, random weights made on the device (16-bit: packed by ' +
    'mlaPackHalf into PackedHalfTensors; the stacks share them); greedy generate of N + 1 tokens from ' +
    'P-token prompts, stopTokens [] (never stops early)';

export const MODEL_TIMING =
    'one generate() call per repetition, timed on the host: time to first token = call start → ' +
    'onToken of the first token (of every sequence, batch > 1); decode ms/step = (last token − first ' +
    'token) / N, tokens/s = B · 1000 / that. A warm-up call per stack first (maxNewTokens 2: compiles ' +
    'the prefill and decode programs and makes derived weights), then the stacks interleaved ' +
    '(L1, L2, L1, L2, …), queue idle before each call; medians. Per layer = median over the ' +
    'repetitions of (deeper stack − shallower) / (layer difference); fixed = shallower − its layers × ' +
    'per layer (embedding lookup, final norm, head, sampling, read-back, per-step host work)';

/**
 * Bytes of the device's live buffers: the webgpu backend's numBytesInGPU (buffers in use); else
 * the tensors' data counted once per buffer (tf.memory().numBytes counts a buffer once per tensor
 * that shares it, as the model's weights share the state dict's).
 */
export function bufferBytes() {
  const m = tf.memory();
  if (typeof m.numBytesInGPU === 'number') return m.numBytesInGPU;
  let bytes = 0;
  for (const info of tf.engine().state.tensorInfo.values()) bytes += info.bytes ?? 0;
  return bytes;
}

const errorText = (e) => String(e?.message ?? e).split('\n')[0].slice(0, 200);

/** HF names ('model.' prefix) and [out, in] shapes of a youtu decoder of `hf` sizes (tied head). */
export function weightShapes(hf) {
  const {vocab_size: vocab, hidden_size: D, intermediate_size: I, num_attention_heads: H, q_lora_rank: QL,
         kv_lora_rank: L, qk_nope_head_dim: N, qk_rope_head_dim: R, v_head_dim: V} = hf;
  const shapes = [['model.embed_tokens.weight', [vocab, D]]];
  for (let i = 0; i < hf.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    shapes.push(
      [`${p}input_layernorm.weight`, [D]],
      [`${p}self_attn.q_a_proj.weight`, [QL, D]],
      [`${p}self_attn.q_a_layernorm.weight`, [QL]],
      [`${p}self_attn.q_b_proj.weight`, [H * (N + R), QL]],
      [`${p}self_attn.kv_a_proj_with_mqa.weight`, [L + R, D]],
      [`${p}self_attn.kv_a_layernorm.weight`, [L]],
      [`${p}self_attn.kv_b_proj.weight`, [H * (N + V), L]],
      [`${p}self_attn.o_proj.weight`, [D, H * V]],
      [`${p}post_attention_layernorm.weight`, [D]],
      [`${p}mlp.gate_proj.weight`, [I, D]],
      [`${p}mlp.up_proj.weight`, [I, D]],
      [`${p}mlp.down_proj.weight`, [D, I]],
    );
  }
  shapes.push(['model.norm.weight', [D]]);
  if (!hf.tie_word_embeddings) shapes.push(['lm_head.weight', [vocab, D]]);
  return shapes;
}

/**
 * A float32 tensor of `shape`, uniform with standard deviation `std` around `mean`,
 * deterministic in `seed`, in one pass on the device (webgpu: lib/webgpu_programs'
 * uniformFillProgram, the hash of its hashFillProgram with the scale and shift applied in the
 * same program; cpu: tf.randomUniform).
 * tfjs spreads dispatches past 65,535 workgroups over more dimensions (the 262 M-value
 * embedding is one program).
 */
function uniformTensor(shape, seed, std, mean = 0) {
  const half = std * Math.sqrt(3);
  if (tf.getBackend() !== 'webgpu') return tf.randomUniform(shape, mean - half, mean + half, 'float32', seed);
  return run(uniformFillProgram(shape), [], 'float32', uniformFillUniforms(seed, half, mean));
}

/**
 * Random weights for `hf` on the active backend: embedding with standard deviation 0.02,
 * projections 1/√fan_in, norm weights 1 ± 0.1 (all uniform). float32 tensors, or for a 16-bit
 * `dtype` PackedHalfTensors rounded by the package's mlaPackHalf (nearest-even), as
 * loadSafetensors(…, {keepHalf: true}) returns a 16-bit checkpoint's entries. Layer i's
 * weights do not depend on the layer count.
 */
export function makeStateDict(hf, dtype, seed = 1) {
  const weights = {};
  for (const [name, shape] of weightShapes(hf)) {
    const isNorm = name.endsWith('norm.weight');
    const std = name.endsWith('embed_tokens.weight') ? 0.02 : isNorm ? 0.1 / Math.sqrt(3) :
        1 / Math.sqrt(shape[shape.length - 1]);
    let h = seed;
    for (const ch of name) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
    const values = uniformTensor(shape, h, std, isNorm ? 1 : 0);
    if (dtype === 'float32') {
      weights[name] = values;
    } else {
      const words = mlaPackHalf(values, dtype);
      values.dispose();
      weights[name] = new PackedHalfTensor(words, dtype, shape);
    }
  }
  return weights;
}

/**
 * The random weights of the model cases, made once per weight dtype and config (the batch-1
 * and batch-4 bf16 cases share them; the embedding alone takes seconds to make on SwiftShader)
 * and remade if a model disposed them.
 */
export class StateDicts {
  constructor() {
    this.entries = new Map();
  }

  /** {weights, ms, bytes, reused}: weights of `hf` (its num_hidden_layers) in `dtype`. */
  async get(hf, dtype) {
    const key = `${dtype}:${JSON.stringify(hf)}`;
    const entry = this.entries.get(key);
    if (entry && Object.values(entry.weights).every((w) => !w.isDisposed)) return {...entry, reused: true};
    // Another dtype's weights go first: the float32 set is 2× the bf16 one.
    this.dispose();
    await sync();
    const before = bufferBytes();
    const t = now();
    const weights = makeStateDict(hf, dtype, 7);
    await sync();
    const made = {weights, ms: now() - t, bytes: bufferBytes() - before};
    this.entries.set(key, made);
    return {...made, reused: false};
  }

  dispose() {
    for (const {weights} of this.entries.values()) {
      for (const w of Object.values(weights)) if (!w.isDisposed) w.dispose();
    }
    this.entries.clear();
  }
}

/** The first `numLayers` layers of `weights` with the embedding and final norm (shared tensors). */
function subsetStateDict(weights, numLayers) {
  const out = {};
  for (const [name, w] of Object.entries(weights)) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m === null || Number(m[1]) < numLayers) out[name] = w;
  }
  return out;
}

/** `count` prompts of `length` token ids in [0, vocab), deterministic in `seed`. */
function makePrompts(count, length, vocab, seed) {
  const random = prng(seed);
  return Array.from({length: count}, () => Array.from({length}, () => Math.floor(random() * vocab)));
}

/**
 * One generate call: host times of the call's start, each step's tokens (the moment the last
 * sequence of the batch got its k-th token), and the tokens.
 */
async function timedGenerate(lm, prompts, maxNewTokens) {
  const B = prompts.length;
  const counts = new Array(B).fill(0);
  const stepTimes = [];
  await sync();
  const t0 = now();
  const tokens = await lm.generate(prompts, {
    maxNewTokens, temperature: 0, stopTokens: [],
    onToken: (token, seq) => {
      const k = counts[seq]++;
      // Step k is done when every sequence has its k-th token.
      if (counts.every((c) => c > k) && stepTimes.length === k) stepTimes.push(now() - t0);
    },
  });
  const totalMs = now() - t0;
  return {tokens, stepTimes, totalMs};
}

function checkTokens(tokens, prompts, newTokens, vocab) {
  if (!Array.isArray(tokens) || tokens.length !== prompts.length) {
    return `generate returned ${Array.isArray(tokens) ? tokens.length : typeof tokens} sequences, expected ${prompts.length}`;
  }
  for (const seq of tokens) {
    if (seq.length !== newTokens) return `a sequence has ${seq.length} new tokens, expected ${newTokens}`;
    if (!seq.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)) return `a token outside [0, ${vocab})`;
  }
  return null;
}

const sameTokens = (a, b) => a.length === b.length && a.every((s, i) => s.length === b[i].length &&
    s.every((t, j) => t === b[i][j]));

/**
 * Measures one model case: stacks of `layers` (e.g. [1, 2]) layers built from one set of
 * random weights (the shallower stacks use the first layers of it), a warm-up call each, then
 * `reps` rounds of one timed generate per stack. Errors go to result.errors.
 */
export async function measureModelCase(c, models, stateDicts, {layers = [1, 2], tiny = false} = {}) {
  const base = tiny ? TINY_LM : YOUTU_2B;
  const depths = [...new Set(layers)].sort((a, b) => a - b);
  const maxLayers = depths[depths.length - 1];
  const {B, promptTokens: P, newTokens: N, reps} = c;
  const result = {case: c.name, id: c.id, kind: 'model', dtype: c.dtype, cacheDtype: c.cacheDtype, batch: B,
                  promptTokens: P, newTokens: N, layers: depths, reps, errors: [], stacks: []};
  const pageSize = 64;
  const maxSeqLen = Math.ceil((P + N + 2) / pageSize) * pageSize;
  const lmOptions = {dtype: c.dtype, cacheDtype: c.cacheDtype, maxSeqLen, pageSize,
                     totalNumPages: B * (maxSeqLen / pageSize)};
  result.lmOptions = lmOptions;
  const lms = [];
  try {
    const {CausalLM} = models;
    if (!CausalLM || typeof CausalLM.fromStateDict !== 'function') {
      throw new Error('tfjs-mla/models has no CausalLM.fromStateDict');
    }
    const made = await stateDicts.get({...base, num_hidden_layers: maxLayers}, c.dtype);
    const weights = made.weights;
    result.stateDict = {ms: made.ms, bytes: made.bytes, reused: made.reused};
    await sync();
    const memoryBefore = bufferBytes();
    let t;
    for (const L of depths) {
      t = now();
      const hf = {...base, num_hidden_layers: L};
      const lm = await CausalLM.fromStateDict(hf, subsetStateDict(weights, L), lmOptions);
      lms.push(lm);
      result.stacks.push({layers: L, buildMs: now() - t, weightBytes: lm.weightBytes ?? null,
                          cacheBytesPerToken: lm.cacheBytesPerToken ?? null,
                          standardCacheBytesPerToken: lm.standardCacheBytesPerToken ?? null,
                          ttftTimes: [], decodeStepTimes: [], totalTimes: []});
    }
    // Device bytes the stacks hold beyond the state dict (0 when they share its buffers).
    result.memoryBytesOfStacks = bufferBytes() - memoryBefore;
    const prompts = makePrompts(B, P, base.vocab_size, 11 + B);
    // Warm-ups: the first stack compiles the prefill and decode programs (the same prompts:
    // some programs are made per row count); every stack makes its derived weights (absorbed
    // W_UK / W_UV, …) on its first steps.
    for (let i = 0; i < lms.length; i++) {
      t = now();
      const w = await timedGenerate(lms[i], prompts, 2);
      result.stacks[i].warmUpMs = now() - t;
      const bad = checkTokens(w.tokens, prompts, 2, base.vocab_size);
      if (bad) throw new Error(`warm-up of the ${depths[i]}-layer stack: ${bad}`);
    }
    // …and with the derived weights the first steps made.
    await sync();
    result.memoryBytesOfStacksAfterWarmUp = bufferBytes() - memoryBefore;
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < lms.length; i++) {
        const s = result.stacks[i];
        const g = await timedGenerate(lms[i], prompts, N + 1);
        const bad = checkTokens(g.tokens, prompts, N + 1, base.vocab_size);
        if (bad) throw new Error(`${depths[i]}-layer stack, repetition ${r + 1}: ${bad}`);
        if (g.stepTimes.length !== N + 1) {
          throw new Error(`${depths[i]}-layer stack: onToken saw ${g.stepTimes.length} steps, expected ${N + 1}`);
        }
        // Greedy on the same prompts: every repetition must give the same tokens.
        s.tokens ??= g.tokens;
        if (!sameTokens(s.tokens, g.tokens)) result.errors.push(`${depths[i]}-layer stack: repetition ${r + 1} gave other tokens`);
        s.ttftTimes.push(g.stepTimes[0]);
        s.decodeStepTimes.push((g.stepTimes[N] - g.stepTimes[0]) / N);
        s.totalTimes.push(g.totalMs);
        s.stepTimes ??= [];
        s.stepTimes.push(g.stepTimes);
      }
    }
    result.firstTokens = result.stacks.map((s) => s.tokens.map((seq) => seq.slice(0, 4)));
    for (const s of result.stacks) {
      s.ttftMs = median(s.ttftTimes);
      s.decodeMsPerStep = median(s.decodeStepTimes);
      s.decodeTokensPerS = 1000 * B / s.decodeMsPerStep;
      delete s.tokens;
    }
    // Per layer: paired differences within each round (same machine load), medians.
    const lo = result.stacks[0];
    const hi = result.stacks[result.stacks.length - 1];
    const dL = hi.layers - lo.layers;
    if (dL > 0) {
      const slope = (key) => median(lo[key].map((v, r) => (hi[key][r] - v) / dL));
      const perLayer = {ttftMs: slope('ttftTimes'), decodeMsPerStep: slope('decodeStepTimes')};
      const fixed = {ttftMs: lo.ttftMs - lo.layers * perLayer.ttftMs,
                     decodeMsPerStep: lo.decodeMsPerStep - lo.layers * perLayer.decodeMsPerStep};
      const full = base.num_hidden_layers;
      const fullDecode = fixed.decodeMsPerStep + full * perLayer.decodeMsPerStep;
      const layerBytes = hi.weightBytes !== null && lo.weightBytes !== null ? (hi.weightBytes - lo.weightBytes) / dL : null;
      const fixedBytes = layerBytes !== null ? lo.weightBytes - lo.layers * layerBytes : null;
      // The decode step streams every weight once: its bytes over its time, a rate to read
      // against the device's read bandwidth (the fixed part's bytes are the head's = embedding).
      result.perLayer = {...perLayer, weightBytes: layerBytes,
                         decodeWeightGBPerS: layerBytes !== null ? layerBytes / perLayer.decodeMsPerStep / 1e6 : null};
      result.fixed = {...fixed, weightBytes: fixedBytes,
                      decodeWeightGBPerS: fixedBytes !== null ? fixedBytes / fixed.decodeMsPerStep / 1e6 : null};
      result.extrapolated = {
        layers: full,
        ttftMs: fixed.ttftMs + full * perLayer.ttftMs,
        decodeMsPerStep: fullDecode,
        decodeTokensPerS: 1000 * B / fullDecode,
        weightBytes: result.fixed.weightBytes !== null ? result.fixed.weightBytes + full * result.perLayer.weightBytes : null,
      };
    }
    // Cache bytes per token: the latent cache of the deepest stack against a standard K/V
    // cache in the same dtype, per layer and for the full model.
    if (hi.cacheBytesPerToken !== null) {
      const per = hi.cacheBytesPerToken / hi.layers;
      const std = hi.standardCacheBytesPerToken !== null ? hi.standardCacheBytesPerToken / hi.layers : null;
      result.cache = {bytesPerTokenPerLayer: per, standardBytesPerTokenPerLayer: std,
                      standardOverLatent: std !== null ? std / per : null,
                      fullModelBytesPerToken: per * base.num_hidden_layers,
                      fullModelStandardBytesPerToken: std !== null ? std * base.num_hidden_layers : null};
    }
  } catch (e) {
    result.errors.push(errorText(e));
  } finally {
    for (const lm of lms) {
      try {
        lm.dispose();
      } catch (e) {
        result.errors.push(`dispose: ${errorText(e)}`);
      }
    }
  }
  return result;
}
