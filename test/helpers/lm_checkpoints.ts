/**
 * Small HF-format MLA checkpoints that tests write themselves: a config.json as Hugging Face /
 * DeepSeek write it, seeded random weights in safetensors (one file, or shards with
 * model.safetensors.index.json), and the stored values for the float64 reference
 * (test/helpers/reference_lm.ts). Weights are scaled like test/fixtures/tiny_mla_lm:
 * projections N(0, 1/fan_in), embedding N(0, 1), LM head N(0, 16/hidden), RMSNorm weights
 * 1 + 0.2·N(0, 1) (variances); BF16 checkpoints hold those values rounded to bf16 (nearest-even)
 * and `weights` holds exactly the rounded values, so a loader that widens to float32 loses nothing.
 *
 * Browser-safe: no Node module is imported statically (writeCheckpoint imports node:fs/promises
 * and node:path when called). Imports only encodeSafetensors from src/ (the writer).
 */
import {encodeSafetensors, SafetensorsTensorData} from '../../src/io/safetensors.js';
import {randomUint32} from './random.js';

export type LMModelType = 'youtu'|'deepseek_v2'|'deepseek_v3';

/** YaRN rope scaling. A key whose value is undefined (or null) is left out of the config. */
export interface YarnSpec {
  /** Default 4. null: no `factor` key (HF then uses max_position_embeddings / original). */
  factor?: number|null;
  /** Default max_position_embeddings / factor (as DeepSeek's configs: 163840 / 40 = 4096). null: no key. */
  originalMaxPositionEmbeddings?: number|null;
  /** Default 32 / 1 (written); null: no key. */
  betaFast?: number|null;
  betaSlow?: number|null;
  mscale?: number|null;
  mscaleAllDim?: number|null;
  attentionFactor?: number|null;
}

export interface CheckpointSpec {
  /** Default 'youtu'. */
  modelType?: LMModelType;
  /** Seeds every weight (default 1). */
  seed?: number;
  vocabSize?: number;           // 256
  hiddenSize?: number;          // 64
  intermediateSize?: number;    // 96
  numLayers?: number;           // 2
  numHeads?: number;            // 4
  /** null: q_proj (no q-LoRA). Default 32. */
  qLoraRank?: number|null;
  kvLoraRank?: number;          // 32
  qkNopeHeadDim?: number;       // 16
  qkRopeHeadDim?: number;       // 8
  vHeadDim?: number;            // 16
  maxPositionEmbeddings?: number;  // 256
  rmsNormEps?: number;          // 1e-6
  /**
   * true: tied (no lm_head.weight); false: an lm_head.weight. 'omit': no tie_word_embeddings key,
   * tied or not by the config class's default (YoutuConfig: true, DeepSeek: false). Default false.
   */
  tie?: boolean|'omit';
  ropeTheta?: number;           // 10000
  /**
   * 'top-level' (default): `rope_theta` and `rope_scaling` (null or the YaRN dict) at the top,
   * as transformers 4 and DeepSeek write them. 'rope_parameters': transformers 5's form, one
   * `rope_parameters: {rope_theta, rope_type, …}` and no top-level rope_theta / rope_scaling.
   */
  ropeLocation?: 'top-level'|'rope_parameters';
  /** The type key inside a top-level rope_scaling: DeepSeek's configs say 'type' (the default for them), HF's 'rope_type' (youtu's default). */
  ropeTypeKey?: 'type'|'rope_type';
  /** Written as given; 'omit' leaves the key out (HF's default: true). Default: true, omitted for deepseek_v2. */
  ropeInterleave?: boolean|'omit';
  /** YaRN scaling; null/undefined: none. */
  yarn?: YarnSpec|null;
  /** Storage dtype (default 'BF16'). */
  dtype?: 'BF16'|'F32';
  /** 1 (default): model.safetensors; n > 1: model-0000k-of-0000n.safetensors + index. */
  shards?: number;
  /**
   * DeepSeek models only (youtu has no MoE keys). 'null-experts' (the default): n_routed_experts
   * null, every layer dense. 'first-k': n_routed_experts 4 (MoE keys as DeepSeek writes them)
   * with first_k_dense_replace = numLayers, every layer dense. 'moe': n_routed_experts 4,
   * first_k_dense_replace 1: layers ≥ 1 routed, with their expert / gate / shared-expert weights.
   */
  mlp?: 'null-experts'|'first-k'|'moe';
  bosTokenId?: number;          // 1
  eosTokenId?: number;          // 2
}

export interface StoredWeight {
  shape: number[];
  /** The stored values (bf16-rounded for BF16), row-major. */
  values: Float32Array;
}

export interface LMCheckpoint {
  /** The spec with its defaults filled in. */
  spec: Required<Omit<CheckpointSpec, 'yarn'>> & {yarn: YarnSpec|null};
  /** The parsed config.json. */
  config: Record<string, unknown>;
  /** File name → bytes: config.json, and model.safetensors or the index and its shards. */
  files: Map<string, Uint8Array>;
  /** Every tensor by HF name, in state-dict order. */
  weights: Map<string, StoredWeight>;
  /** The safetensors file names, in order. */
  weightFiles: string[];
  /** Bytes of tensor data over all files (the index's metadata.total_size). */
  totalSize: number;
}

const DEFAULTS = {
  seed: 1, vocabSize: 256, hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4,
  qLoraRank: 32, kvLoraRank: 32, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16,
  maxPositionEmbeddings: 256, rmsNormEps: 1e-6, tie: false, ropeTheta: 10000,
  ropeLocation: 'top-level', dtype: 'BF16', shards: 1, mlp: 'null-experts', bosTokenId: 1, eosTokenId: 2,
} as const;

/** Checkpoints that cover the loader's features, by name (each 2 layers, hidden 64 or less). */
export const CHECKPOINT_VARIANTS: Record<string, CheckpointSpec> = {
  /** youtu, q-LoRA, untied, plain rope, BF16, one file. */
  youtuPlain: {modelType: 'youtu', seed: 11},
  /** youtu without tie_word_embeddings (YoutuConfig's default: tied, no lm_head.weight), rope_parameters only. */
  youtuTiedByDefault: {modelType: 'youtu', seed: 12, tie: 'omit', ropeLocation: 'rope_parameters', ropeTheta: 1.6e6},
  /** youtu, no q-LoRA, rope_interleave false, rms_norm_eps 1e-5, F32, sharded in 3. */
  youtuHalvesF32Sharded: {modelType: 'youtu', seed: 13, qLoraRank: null, ropeInterleave: false, rmsNormEps: 1e-5,
                          dtype: 'F32', shards: 3},
  /** deepseek_v3 dense by n_routed_experts null; YaRN with mscale ≠ mscale_all_dim, top-level rope_scaling ('type'). */
  deepseekV3YarnMscales: {modelType: 'deepseek_v3', seed: 21, mlp: 'null-experts',
                          yarn: {factor: 4, mscale: 0.8, mscaleAllDim: 0.5}},
  /** deepseek_v3 dense by first_k_dense_replace ≥ layers; YaRN without mscale keys, in rope_parameters; tied. */
  deepseekV3YarnNoMscale: {modelType: 'deepseek_v3', seed: 22, mlp: 'first-k', tie: true,
                           ropeLocation: 'rope_parameters', yarn: {factor: 8}},
  /** deepseek_v2 (V2-Lite-like: no q-LoRA), YaRN with attention_factor given, sharded in 2. */
  deepseekV2YarnAttentionFactor: {modelType: 'deepseek_v2', seed: 23, qLoraRank: null, shards: 2,
                                  yarn: {factor: 4, mscale: 0.707, mscaleAllDim: 0.707, attentionFactor: 1.25}},
  /** deepseek_v3 with a routed layer (layer 1): a loader must reject it. */
  deepseekV3Moe: {modelType: 'deepseek_v3', seed: 24, mlp: 'moe'},
};

// ---- seeded numbers ----------------------------------------------------------------------

/** Standard normal samples (Box–Muller over mulberry32). */
function normalSource(seed: number): () => number {
  const next = randomUint32(seed);
  let spare: number|undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u1 = (next() + 1) / 4294967297;   // (0, 1)
    const u2 = next() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 value of bf16 bits. */
export function bf16ToFloat(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** x (finite) rounded to bf16, nearest-even from its float32 value. */
export function roundToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const rounded = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  return bf16ToFloat(rounded);
}

// ---- the checkpoint ------------------------------------------------------------------------

interface TensorPlan {
  name: string;
  shape: number[];
  /** 'normal' with this variance, or 'norm' (1 + 0.2·N). */
  init: {variance: number}|'norm';
}

function resolve(spec: CheckpointSpec): LMCheckpoint['spec'] {
  const modelType = spec.modelType ?? 'youtu';
  const out = {
    ...DEFAULTS,
    modelType,
    ropeTypeKey: modelType === 'youtu' ? 'rope_type' : 'type',
    ropeInterleave: modelType === 'deepseek_v2' ? 'omit' : true,
    ...Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)),
    yarn: spec.yarn ?? null,
  } as LMCheckpoint['spec'];
  if (out.hiddenSize > 64 || out.vocabSize > 512) {
    throw new Error(`makeCheckpoint: keep checkpoints small (hidden ${out.hiddenSize}, vocab ${out.vocabSize})`);
  }
  if (!(out.shards >= 1)) throw new Error(`makeCheckpoint: shards ${out.shards}`);
  return out;
}

function configOf(s: LMCheckpoint['spec']): Record<string, unknown> {
  const R = s.qkRopeHeadDim;
  // ---- rope keys ----
  let ropeKeys: Record<string, unknown>;
  const yarnDict: Record<string, unknown>|null = s.yarn === null ? null : (() => {
    const y = s.yarn!;
    const factor = y.factor === undefined ? 4 : y.factor;
    const orig = y.originalMaxPositionEmbeddings === undefined ?
      Math.round(s.maxPositionEmbeddings / (factor ?? 4)) : y.originalMaxPositionEmbeddings;
    const entries: Array<[string, number|null|undefined]> = [
      ['beta_fast', y.betaFast === undefined ? 32 : y.betaFast],
      ['beta_slow', y.betaSlow === undefined ? 1 : y.betaSlow],
      ['factor', factor],
      ['mscale', y.mscale],
      ['mscale_all_dim', y.mscaleAllDim],
      ['original_max_position_embeddings', orig],
      ['attention_factor', y.attentionFactor],
    ];
    return Object.fromEntries(entries.filter(([, v]) => v !== undefined && v !== null));
  })();
  if (s.ropeLocation === 'rope_parameters') {
    ropeKeys = {rope_parameters: {rope_theta: s.ropeTheta, rope_type: yarnDict === null ? 'default' : 'yarn',
                                  ...(yarnDict ?? {})}};
  } else {
    ropeKeys = {rope_scaling: yarnDict === null ? null : {...yarnDict, [s.ropeTypeKey]: 'yarn'},
                rope_theta: s.ropeTheta};
  }
  const interleave = s.ropeInterleave === 'omit' ? {} : {rope_interleave: s.ropeInterleave};
  const tie = s.tie === 'omit' ? {} : {tie_word_embeddings: s.tie};
  const common = {
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: s.bosTokenId,
    eos_token_id: s.eosTokenId,
    hidden_act: 'silu',
    hidden_size: s.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: s.intermediateSize,
    kv_lora_rank: s.kvLoraRank,
    max_position_embeddings: s.maxPositionEmbeddings,
    model_type: s.modelType,
    num_attention_heads: s.numHeads,
    num_hidden_layers: s.numLayers,
    num_key_value_heads: s.numHeads,
    q_lora_rank: s.qLoraRank,
    qk_nope_head_dim: s.qkNopeHeadDim,
    qk_rope_head_dim: R,
    rms_norm_eps: s.rmsNormEps,
    ...interleave,
    ...ropeKeys,
    ...tie,
    torch_dtype: s.dtype === 'BF16' ? 'bfloat16' : 'float32',
    use_cache: true,
    v_head_dim: s.vHeadDim,
    vocab_size: s.vocabSize,
  };
  if (s.modelType === 'youtu') {
    // As transformers' YoutuConfig writes it (test/fixtures/tiny_mla_lm/config.json): head_dim is the rope size.
    return sortKeys({architectures: ['YoutuForCausalLM'], ...common, head_dim: R,
                     qk_head_dim: s.qkNopeHeadDim + R, pad_token_id: null});
  }
  const v3 = s.modelType === 'deepseek_v3';
  const name = v3 ? 'DeepseekV3' : 'DeepseekV2';
  const routed = s.mlp === 'null-experts' ? null : 4;
  return sortKeys({
    architectures: [`${name}ForCausalLM`],
    auto_map: {
      AutoConfig: `configuration_deepseek.${name}Config`,
      AutoModel: `modeling_deepseek.${name}Model`,
      AutoModelForCausalLM: `modeling_deepseek.${name}ForCausalLM`,
    },
    ...common,
    aux_loss_alpha: 0.001,
    ep_size: 1,
    first_k_dense_replace: s.mlp === 'moe' ? 1 : s.mlp === 'first-k' ? s.numLayers : 0,
    moe_intermediate_size: 32,
    moe_layer_freq: 1,
    n_group: v3 ? 2 : 1,
    n_routed_experts: routed,
    n_shared_experts: v3 ? 1 : 2,
    norm_topk_prob: v3,
    num_experts_per_tok: 2,
    pretraining_tp: 1,
    routed_scaling_factor: v3 ? 2.5 : 1.0,
    scoring_func: v3 ? 'sigmoid' : 'softmax',
    seq_aux: true,
    topk_group: v3 ? 2 : 1,
    topk_method: v3 ? 'noaux_tc' : 'greedy',
    transformers_version: v3 ? '4.33.1' : '4.39.3',
  });
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** The tensors in HF's state-dict order (module registration order). */
function planOf(s: LMCheckpoint['spec'], config: Record<string, unknown>): TensorPlan[] {
  const D = s.hiddenSize;
  const H = s.numHeads;
  const N = s.qkNopeHeadDim;
  const R = s.qkRopeHeadDim;
  const V = s.vHeadDim;
  const L = s.kvLoraRank;
  const I = s.intermediateSize;
  const proj = (name: string, out: number, fanIn: number): TensorPlan =>
    ({name, shape: [out, fanIn], init: {variance: 1 / fanIn}});
  const norm = (name: string, size: number): TensorPlan => ({name, shape: [size], init: 'norm'});
  const plan: TensorPlan[] = [{name: 'model.embed_tokens.weight', shape: [s.vocabSize, D], init: {variance: 1}}];
  const firstDense = config.first_k_dense_replace as number|undefined;
  for (let l = 0; l < s.numLayers; l++) {
    const p = `model.layers.${l}.`;
    if (s.qLoraRank === null) {
      plan.push(proj(`${p}self_attn.q_proj.weight`, H * (N + R), D));
    } else {
      plan.push(proj(`${p}self_attn.q_a_proj.weight`, s.qLoraRank, D));
      plan.push(norm(`${p}self_attn.q_a_layernorm.weight`, s.qLoraRank));
      plan.push(proj(`${p}self_attn.q_b_proj.weight`, H * (N + R), s.qLoraRank));
    }
    plan.push(proj(`${p}self_attn.kv_a_proj_with_mqa.weight`, L + R, D));
    plan.push(norm(`${p}self_attn.kv_a_layernorm.weight`, L));
    plan.push(proj(`${p}self_attn.kv_b_proj.weight`, H * (N + V), L));
    plan.push(proj(`${p}self_attn.o_proj.weight`, D, H * V));
    const routed = s.modelType !== 'youtu' && s.mlp === 'moe' && l >= (firstDense ?? 0);
    if (routed) {
      const E = config.n_routed_experts as number;
      const M = config.moe_intermediate_size as number;
      const shared = M * (config.n_shared_experts as number);
      for (let e = 0; e < E; e++) {
        plan.push(proj(`${p}mlp.experts.${e}.gate_proj.weight`, M, D));
        plan.push(proj(`${p}mlp.experts.${e}.up_proj.weight`, M, D));
        plan.push(proj(`${p}mlp.experts.${e}.down_proj.weight`, D, M));
      }
      plan.push(proj(`${p}mlp.gate.weight`, E, D));
      if (s.modelType === 'deepseek_v3') {
        plan.push({name: `${p}mlp.gate.e_score_correction_bias`, shape: [E], init: {variance: 0.01}});
      }
      plan.push(proj(`${p}mlp.shared_experts.gate_proj.weight`, shared, D));
      plan.push(proj(`${p}mlp.shared_experts.up_proj.weight`, shared, D));
      plan.push(proj(`${p}mlp.shared_experts.down_proj.weight`, D, shared));
    } else {
      plan.push(proj(`${p}mlp.gate_proj.weight`, I, D));
      plan.push(proj(`${p}mlp.up_proj.weight`, I, D));
      plan.push(proj(`${p}mlp.down_proj.weight`, D, I));
    }
    plan.push(norm(`${p}input_layernorm.weight`, D));
    plan.push(norm(`${p}post_attention_layernorm.weight`, D));
  }
  plan.push(norm('model.norm.weight', D));
  const tied = s.tie === 'omit' ? s.modelType === 'youtu' : s.tie;
  if (!tied) plan.push({name: 'lm_head.weight', shape: [s.vocabSize, D], init: {variance: 16 / D}});
  return plan;
}

/**
 * A checkpoint from `spec` (defaults: a 2-layer youtu, hidden 64, vocab 256, q-LoRA 32, untied,
 * plain rope, BF16, one file). Same spec, same bytes.
 */
export function makeCheckpoint(spec: CheckpointSpec = {}): LMCheckpoint {
  const s = resolve(spec);
  const config = configOf(s);
  const plan = planOf(s, config);
  const normal = normalSource(s.seed);
  const weights = new Map<string, StoredWeight>();
  for (const t of plan) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(count);
    const std = t.init === 'norm' ? 0.2 : Math.sqrt(t.init.variance);
    const mean = t.init === 'norm' ? 1 : 0;
    for (let i = 0; i < count; i++) {
      const v = mean + std * normal();
      values[i] = s.dtype === 'BF16' ? roundToBf16(v) : v;
    }
    weights.set(t.name, {shape: t.shape, values});
  }

  // Shards in state-dict order: a new shard where the next tensor would pass k/n of the total.
  const itemSize = s.dtype === 'BF16' ? 2 : 4;
  const bytesOf = (w: StoredWeight) => w.values.length * itemSize;
  const totalSize = [...weights.values()].reduce((a, w) => a + bytesOf(w), 0);
  const groups: string[][] = [[]];
  let sum = 0;
  for (const [name, w] of weights) {
    const size = bytesOf(w);
    const k = groups.length;
    if (groups[k - 1].length > 0 && k < s.shards && sum + size > (k * totalSize) / s.shards) groups.push([]);
    groups[groups.length - 1].push(name);
    sum += size;
  }
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const weightFiles = s.shards === 1 ? ['model.safetensors'] :
    groups.map((_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);

  const files = new Map<string, Uint8Array>();
  files.set('config.json', new TextEncoder().encode(JSON.stringify(config, null, 2) + '\n'));
  const weightMap: Record<string, string> = {};
  groups.forEach((names, i) => {
    const tensors: Record<string, SafetensorsTensorData> = {};
    // safetensors (Python) writes a file's tensors sorted by name.
    for (const name of [...names].sort()) {
      const w = weights.get(name)!;
      tensors[name] = {dtype: s.dtype, shape: w.shape, data: w.values};
      weightMap[name] = weightFiles[i];
    }
    files.set(weightFiles[i], encodeSafetensors(tensors, {format: 'pt'}));
  });
  if (s.shards > 1) {
    const index = {
      metadata: {total_size: totalSize},
      weight_map: Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]])),
    };
    files.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index, null, 2) + '\n'));
  }
  return {spec: s, config, files, weights, weightFiles, totalSize};
}

// ---- reading back --------------------------------------------------------------------------

/**
 * The tensors of one safetensors file (BF16, F16, F32 widened to float32), written here from
 * the format's definition (8-byte little-endian header length, JSON header, data), independent
 * of src/io.
 */
export function decodeSafetensors(bytes: Uint8Array): Map<string, StoredWeight> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as
    Record<string, {dtype: string, shape: number[], data_offsets: [number, number]}>;
  const dataStart = 8 + headerLength;
  const out = new Map<string, StoredWeight>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = entry.data_offsets;
    const values = new Float32Array(count);
    const at = dataStart + begin;
    if (entry.dtype === 'BF16' || entry.dtype === 'F16') {
      if (end - begin !== 2 * count) throw new Error(`decodeSafetensors: ${name}: ${end - begin} bytes for ${count} values`);
      for (let i = 0; i < count; i++) {
        const bits = view.getUint16(at + 2 * i, true);
        values[i] = entry.dtype === 'BF16' ? bf16ToFloat(bits) : f16ToFloat(bits);
      }
    } else if (entry.dtype === 'F32') {
      if (end - begin !== 4 * count) throw new Error(`decodeSafetensors: ${name}: ${end - begin} bytes for ${count} values`);
      for (let i = 0; i < count; i++) values[i] = view.getFloat32(at + 4 * i, true);
    } else {
      throw new Error(`decodeSafetensors: ${name}: dtype ${entry.dtype}`);
    }
    out.set(name, {shape: [...entry.shape], values});
  }
  return out;
}

function f16ToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Every tensor of a checkpoint's files (config.json + model.safetensors, or the index and its
 * shards), read through the index as a loader would.
 */
export function readCheckpointFiles(files: ReadonlyMap<string, Uint8Array>): Map<string, StoredWeight> {
  const indexBytes = files.get('model.safetensors.index.json');
  const names = indexBytes === undefined ? ['model.safetensors'] :
    [...new Set(Object.values((JSON.parse(new TextDecoder().decode(indexBytes)) as
                               {weight_map: Record<string, string>}).weight_map))];
  const out = new Map<string, StoredWeight>();
  for (const name of names) {
    const bytes = files.get(name);
    if (bytes === undefined) throw new Error(`readCheckpointFiles: no ${name}`);
    for (const [k, v] of decodeSafetensors(bytes)) out.set(k, v);
  }
  return out;
}

// ---- writing -----------------------------------------------------------------------

/** Writes the checkpoint's files into `dir` (created if needed). Node only. */
export async function writeCheckpoint(dir: string, checkpoint: Pick<LMCheckpoint, 'files'>): Promise<void> {
  // Imported when called, typed by hand: this module also serves the browser lane (no @types/node there).
  const nodeFs = 'node:fs/promises';
  const nodePath = 'node:path';
  const fs = await import(/* @vite-ignore */ nodeFs) as {
    mkdir(p: string, o: {recursive: boolean}): Promise<unknown>,
    writeFile(p: string, data: Uint8Array): Promise<void>,
  };
  const path = await import(/* @vite-ignore */ nodePath) as {join(...p: string[]): string};
  await fs.mkdir(dir, {recursive: true});
  for (const [name, bytes] of checkpoint.files) await fs.writeFile(path.join(dir, name), bytes);
}
