/**
 * Layer arguments from a Hugging Face DeepSeek-V2/V3 `config.json`.
 */
import {KVCacheParams} from '../cache/kv_cache_params.js';
import type {LatentAttentionWithRopeArgs} from '../layers/latent_attention_with_rope.js';
import {DeepseekYarnRotaryEmbedding, RotaryEmbedding} from '../rope/rotary_embedding.js';

export interface FromHFConfigOptions {
  /** The cache shape; its headDim must be kv_lora_rank + qk_rope_head_dim. */
  kvParams?: KVCacheParams;
  /** Page size of the default kvParams (128). */
  pageSize?: number;
  /** Layers of the default kvParams (1). */
  numLayers?: number;
  /**
   * Rows of the rope table (default `max_position_embeddings`). The table is
   * maxSeqLen × qk_rope_head_dim floats (40 MB at DeepSeek's 163840 × 64): a smaller value
   * saves memory when contexts stay shorter.
   */
  maxSeqLen?: number;
}

export interface FromHFConfigResult {
  rope: RotaryEmbedding;
  /** Ready for `new LatentAttentionWithRope(args)` (add name, graphMode, … as needed). */
  args: LatentAttentionWithRopeArgs;
}

/** The `rope_scaling.type` / `rope_type` values fromHFConfig understands. */
export const SUPPORTED_ROPE_SCALING_TYPES = ['yarn', 'deepseek_yarn', 'default'] as const;

type Json = Record<string, unknown>;

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return JSON.stringify(value).slice(0, 80);
  return String(value);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Reader {
  constructor(private readonly obj: Json, private readonly path: string) {}

  private name(field: string): string {
    return `fromHFConfig: ${this.path}${field}`;
  }

  integer(field: string, min: number, fallback?: number): number {
    const value = this.obj[field];
    if (value === undefined || (value === null && fallback !== undefined)) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${this.name(field)} is missing (expected an integer ≥ ${min})`);
    }
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      throw new Error(`${this.name(field)}: expected an integer ≥ ${min}, got ${show(value)}`);
    }
    return value;
  }

  /** A finite number, > min when `exclusive`, ≥ min otherwise. */
  number(field: string, min: number, exclusive: boolean, fallback?: number): number {
    const value = this.obj[field];
    const want = `a finite number ${exclusive ? '>' : '≥'} ${min}`;
    if (value === undefined || (value === null && fallback !== undefined)) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${this.name(field)} is missing (expected ${want})`);
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || (exclusive ? value <= min : value < min)) {
      throw new Error(`${this.name(field)}: expected ${want}, got ${show(value)}`);
    }
    return value;
  }

  boolean(field: string, fallback: boolean): boolean {
    const value = this.obj[field];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') {
      throw new Error(`${this.name(field)}: expected true or false, got ${show(value)}`);
    }
    return value;
  }
}

/**
 * The rope and the `LatentAttentionWithRope` arguments of one attention layer of a
 * DeepSeek-V2/V3 checkpoint, from its `config.json` (parsed):
 *
 * | config.json | here |
 * |---|---|
 * | `hidden_size`, `num_attention_heads`, `num_key_value_heads` (default: heads) | hiddenSize, numAttentionHeads, numKeyValueHeads |
 * | `q_lora_rank` (null / 0 / missing: no q-LoRA) | qLoraRank |
 * | `kv_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim` | kvLoraRank, … |
 * | `rope_theta`, `max_position_embeddings`, `rope_interleave` (true) | the rope |
 * | `rope_scaling`: null → RotaryEmbedding; `{type or rope_type: 'yarn' or 'deepseek_yarn', factor, original_max_position_embeddings, beta_fast (32), beta_slow (1), mscale, mscale_all_dim, attention_factor}` → DeepseekYarnRotaryEmbedding; `'default'` → RotaryEmbedding | |
 * | `rope_parameters` (HF's newer form: `{rope_theta, rope_type, factor, …}` in one object), read when present instead of `rope_theta` / `rope_scaling` | the rope |
 *
 * The layer computes what HF transformers' DeepseekV3Attention computes for the config, also
 * where HF's conventions differ from MAX's: with g(s, m) = 0.1·m·ln(s) + 1 (1 for s ≤ 1),
 * - the softmax scale is (N+R)^−0.5 · g(factor, mscale_all_dim)² when mscale_all_dim is set and
 *   non-zero, else (N+R)^−0.5 (MAX uses mscale; every official config has the two equal);
 * - the cos/sin multiplier is `attention_factor` when given, else g(factor, mscale) /
 *   g(factor, mscale_all_dim) when both are set and non-zero, else g(factor, 1);
 * - q_a_layernorm and kv_a_layernorm use eps 1e-6 (HF's default for them; `rms_norm_eps` is the
 *   decoder's own norms').
 * The rope is built with scaling params that give that multiplier (mscale_all_dim 0 and the
 * matching mscale) and `args.scale` carries the softmax scale, so a layer made from these args
 * (or its getConfig) computes HF's attention. No `rope_theta` (top level or in
 * rope_parameters) is an Error: HF's default differs between model types.
 * A missing required field or a wrong type is an Error naming the field.
 *
 * ```ts
 * const {args} = fromHFConfig(JSON.parse(configJson), {pageSize: 64});
 * const layer = new LatentAttentionWithRope(args);
 * layer.loadStateDict(await loadSafetensors(path, {prefix: 'model.layers.0.self_attn.'}));
 * ```
 */
export function fromHFConfig(config: object, options: FromHFConfigOptions = {}): FromHFConfigResult {
  if (!isObject(config)) {
    throw new Error(`fromHFConfig config: expected a config.json object, got ${show(config)}`);
  }
  const c = new Reader(config, 'config.');
  const hiddenSize = c.integer('hidden_size', 1);
  const numAttentionHeads = c.integer('num_attention_heads', 1);
  const numKeyValueHeads = c.integer('num_key_value_heads', 1, numAttentionHeads);
  const qRaw = config.q_lora_rank;
  const qLoraRank = qRaw === undefined || qRaw === null || qRaw === 0 ? null : c.integer('q_lora_rank', 1);
  const kvLoraRank = c.integer('kv_lora_rank', 1);
  const qkNopeHeadDim = c.integer('qk_nope_head_dim', 1);
  const qkRopeHeadDim = c.integer('qk_rope_head_dim', 2);
  if (qkRopeHeadDim % 2 !== 0) {
    throw new Error(`fromHFConfig: config.qk_rope_head_dim: expected an even number, got ${qkRopeHeadDim}`);
  }
  const vHeadDim = c.integer('v_head_dim', 1);
  const ropeParameters = config.rope_parameters;
  if (ropeParameters !== undefined && ropeParameters !== null && !isObject(ropeParameters)) {
    throw new Error(`fromHFConfig: config.rope_parameters: expected null or an object, got ${show(ropeParameters)}`);
  }
  const theta = isObject(ropeParameters) && ropeParameters.rope_theta !== undefined ?
      new Reader(ropeParameters, 'config.rope_parameters.').number('rope_theta', 1, true) :
      c.number('rope_theta', 1, true);
  const maxPositionEmbeddings = c.integer('max_position_embeddings', 1);
  // Checked as before, but not used: the attention's norms take HF's eps 1e-6.
  c.number('rms_norm_eps', 0, true, 1e-6);
  const interleaved = c.boolean('rope_interleave', true);
  if (c.boolean('attention_bias', false)) {
    throw new Error('fromHFConfig: config.attention_bias is true, but LatentAttentionWithRope has ' +
                    'no biases (DeepSeek checkpoints use attention_bias: false)');
  }

  const opts = options ?? {};
  const maxSeqLen = opts.maxSeqLen ?? maxPositionEmbeddings;
  if (!Number.isSafeInteger(maxSeqLen) || maxSeqLen < 1) {
    throw new Error(`fromHFConfig options.maxSeqLen: expected an integer ≥ 1, got ${show(maxSeqLen)}`);
  }
  const common = {dim: qkRopeHeadDim, nHeads: numAttentionHeads, theta, maxSeqLen, interleaved};
  const {rope, softmaxMultiplier} = makeRope(
      isObject(ropeParameters) ? ropeParameters : config.rope_scaling,
      isObject(ropeParameters) ? 'config.rope_parameters' : 'config.rope_scaling', common);
  // HF's softmax scale; the layer's λ = rope.computeScale(scale).
  const hfScale = softmaxMultiplier / Math.sqrt(qkNopeHeadDim + qkRopeHeadDim);
  const scale = hfScale / rope.computeScale(1);

  const headDim = kvLoraRank + qkRopeHeadDim;
  let kvParams: KVCacheParams;
  if (opts.kvParams !== undefined) {
    if (!(opts.kvParams instanceof KVCacheParams)) {
      throw new Error(`fromHFConfig options.kvParams: expected a KVCacheParams, got ${show(opts.kvParams)}`);
    }
    if (opts.kvParams.headDim !== headDim) {
      throw new Error(`fromHFConfig options.kvParams.headDim: expected kv_lora_rank + qk_rope_head_dim ` +
                      `= ${kvLoraRank} + ${qkRopeHeadDim} = ${headDim}, got ${opts.kvParams.headDim}`);
    }
    kvParams = opts.kvParams;
  } else {
    kvParams = new KVCacheParams({headDim, pageSize: opts.pageSize ?? 128, numLayers: opts.numLayers ?? 1});
  }

  return {
    rope,
    args: {
      rope, numAttentionHeads, numKeyValueHeads, hiddenSize, kvParams, qLoraRank, kvLoraRank,
      qkNopeHeadDim, qkRopeHeadDim, vHeadDim, rmsNormEps: HF_ATTENTION_NORM_EPS, scale,
    },
  };
}

/** The eps of HF's q_a_layernorm / kv_a_layernorm (DeepseekV3RMSNorm's default). */
export const HF_ATTENTION_NORM_EPS = 1e-6;

/** HF's yarn_get_mscale: g(s, m) = 0.1·m·ln(s) + 1, 1 for s ≤ 1. */
function yarnMscale(scale: number, m: number): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/**
 * The rope of `scaling` (rope_scaling or rope_parameters) with HF's cos/sin multiplier, and HF's
 * softmax multiplier g(factor, mscale_all_dim)² (1 without YaRN or mscale_all_dim).
 */
function makeRope(scaling: unknown, where: string,
                  common: {dim: number, nHeads: number, theta: number, maxSeqLen: number,
                           interleaved: boolean}): {rope: RotaryEmbedding, softmaxMultiplier: number} {
  const plain = {rope: new RotaryEmbedding(common), softmaxMultiplier: 1};
  if (scaling === undefined || scaling === null) return plain;
  if (!isObject(scaling)) {
    throw new Error(`fromHFConfig: ${where}: expected null or an object, got ${show(scaling)}`);
  }
  const typeField = scaling.type !== undefined ? 'type' : 'rope_type';
  const type = scaling[typeField];
  const supported = SUPPORTED_ROPE_SCALING_TYPES.map((t) => `'${t}'`).join(', ');
  if (typeof type !== 'string') {
    throw new Error(`fromHFConfig: ${where}.type (or rope_type): expected one of ` +
                    `${supported}, got ${show(type)}`);
  }
  if (type === 'default') return plain;
  if (type !== 'yarn' && type !== 'deepseek_yarn') {
    throw new Error(`fromHFConfig: ${where}.${typeField} '${type}' is not supported ` +
                    `(supported: ${supported}, or rope_scaling null for plain RoPE)`);
  }
  const s = new Reader(scaling, `${where}.`);
  const factor = s.number('factor', 0, true);
  const mscale = s.number('mscale', 0, false, 0);
  const mscaleAllDim = s.number('mscale_all_dim', 0, false, 0);
  const attentionFactor = scaling.attention_factor === undefined || scaling.attention_factor === null ?
      (mscale !== 0 && mscaleAllDim !== 0 ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) :
                                            yarnMscale(factor, 1)) :
      s.number('attention_factor', 0, true);
  // The rope's magnitude is g(factor, mscale) / g(factor, mscaleAllDim): mscaleAllDim 0 and
  // the mscale whose g is the multiplier (any multiplier when factor > 1).
  if (factor <= 1 && attentionFactor !== 1) {
    throw new Error(`fromHFConfig: ${where}.attention_factor ${attentionFactor} with factor ${factor} ≤ 1 ` +
                    `is not supported (YaRN's multiplier is 1 there)`);
  }
  const ropeMscale = factor <= 1 ? 1 : (attentionFactor - 1) / (0.1 * Math.log(factor));
  const rope = new DeepseekYarnRotaryEmbedding({...common, scalingParams: {
    scalingFactor: factor,
    originalMaxPositionEmbeddings: s.integer('original_max_position_embeddings', 1),
    betaFast: s.number('beta_fast', 0, true, 32),
    betaSlow: s.number('beta_slow', 0, true, 1),
    mscale: ropeMscale,
    mscaleAllDim: 0,
  }});
  const softmaxMultiplier = mscaleAllDim !== 0 ? yarnMscale(factor, mscaleAllDim) ** 2 : 1;
  return {rope, softmaxMultiplier};
}
