/**
 * The decoder of an HF causal-LM config.json (the attention's own fields are fromHFConfig's):
 * which architectures run, and the sizes of everything around the attention.
 */

/** HF `model_type`s loadCausalLM runs (deepseek_v2/v3 only when every layer is dense). */
export const SUPPORTED_MODEL_TYPES = ['youtu', 'deepseek_v2', 'deepseek_v3'] as const;
export type CausalLMModelType = typeof SUPPORTED_MODEL_TYPES[number];

/** The decoder's sizes and tokens, read from config.json. */
export interface CausalLMConfig {
  modelType: CausalLMModelType;
  vocabSize: number;
  hiddenSize: number;
  /** Width of the SwiGLU MLP (gate_proj / up_proj rows). */
  intermediateSize: number;
  numLayers: number;
  /** eps of input_layernorm, post_attention_layernorm and model.norm. */
  rmsNormEps: number;
  /** No lm_head.weight: the head is embed_tokens (youtu's default is true, DeepSeek's false). */
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number|null;
  /** eos_token_id as a list (HF allows a number or a list). */
  eosTokenIds: number[];
  /** The config.json object as read. */
  hf: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.slice(0, 80);
}

function integerField(config: Json, field: string, min: number, fallback?: number): number {
  const value = config[field];
  if ((value === undefined || value === null) && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new Error(`config.json ${field}: expected an integer ≥ ${min}, got ${show(value)}`);
  }
  return value;
}

function tokenIds(config: Json, field: string): number[] {
  const value = config[field];
  if (value === undefined || value === null) return [];
  const ids = Array.isArray(value) ? value : [value];
  for (const id of ids) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw new Error(`config.json ${field}: expected a token id or a list of them, got ${show(value)}`);
    }
  }
  return ids as number[];
}

/**
 * Reads the decoder part of `config` (a parsed config.json). Errors name the field, or the
 * model_type / feature that is not supported (routed experts, biases, another activation).
 */
export function parseCausalLMConfig(config: unknown): CausalLMConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new Error(`config.json: expected a JSON object, got ${show(config)}`);
  }
  const c = config as Json;
  const modelType = c.model_type;
  if (!(SUPPORTED_MODEL_TYPES as readonly unknown[]).includes(modelType)) {
    throw new Error(`config.json model_type: ${show(modelType)} is not supported; tfjs-mla/models ` +
                    `runs ${SUPPORTED_MODEL_TYPES.map((t) => `'${t}'`).join(', ')} (dense MLA decoders)`);
  }
  const numLayers = integerField(c, 'num_hidden_layers', 1);
  if (modelType !== 'youtu') checkDense(c, numLayers, modelType as string);
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') {
    throw new Error(`config.json hidden_act: only 'silu' (SwiGLU MLPs) is supported, got ${show(act)}`);
  }
  if (c.mlp_bias === true) throw new Error('config.json mlp_bias: true is not supported (no MLP biases)');
  const eps = c.rms_norm_eps ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0)) {
    throw new Error(`config.json rms_norm_eps: expected a number > 0, got ${show(eps)}`);
  }
  const tie = c.tie_word_embeddings ?? (modelType === 'youtu');
  if (typeof tie !== 'boolean') {
    throw new Error(`config.json tie_word_embeddings: expected true or false, got ${show(tie)}`);
  }
  const bos = tokenIds(c, 'bos_token_id');
  return {
    modelType: modelType as CausalLMModelType,
    vocabSize: integerField(c, 'vocab_size', 1),
    hiddenSize: integerField(c, 'hidden_size', 1),
    intermediateSize: integerField(c, 'intermediate_size', 1),
    numLayers,
    rmsNormEps: eps,
    tieWordEmbeddings: tie,
    maxPositionEmbeddings: integerField(c, 'max_position_embeddings', 1),
    bosTokenId: bos.length > 0 ? bos[0] : null,
    eosTokenIds: tokenIds(c, 'eos_token_id'),
    hf: c,
  };
}

/**
 * DeepSeek-V2/V3 layer i is MoE when n_routed_experts is set, i ≥ first_k_dense_replace and
 * i % moe_layer_freq == 0 (HF's DeepseekV2/V3 decoder layer); only all-dense models run here.
 */
function checkDense(c: Json, numLayers: number, modelType: string): void {
  const experts = c.n_routed_experts;
  if (experts === undefined || experts === null || experts === 0) return;
  const firstDense = integerField(c, 'first_k_dense_replace', 0, 0);
  const freq = integerField(c, 'moe_layer_freq', 1, 1);
  for (let i = firstDense; i < numLayers; i++) {
    if (i % freq === 0) {
      throw new Error(`config.json: layer ${i} of this ${modelType} model routes to experts ` +
                      `(n_routed_experts ${show(experts)}, first_k_dense_replace ${firstDense}, ` +
                      `moe_layer_freq ${freq}); routed experts (MoE) are not supported — only dense ` +
                      `models (n_routed_experts null, or first_k_dense_replace ≥ num_hidden_layers ${numLayers})`);
    }
  }
}

/** The HF names of a decoder's weights ('model.' prefix), with their [out, in] shapes. */
export function decoderWeightShapes(config: CausalLMConfig): Map<string, number[]> {
  const {vocabSize: vocab, hiddenSize: hidden, intermediateSize: inter} = config;
  const shapes = new Map<string, number[]>([['model.embed_tokens.weight', [vocab, hidden]]]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`;
    shapes.set(`${p}input_layernorm.weight`, [hidden]);
    shapes.set(`${p}post_attention_layernorm.weight`, [hidden]);
    shapes.set(`${p}mlp.gate_proj.weight`, [inter, hidden]);
    shapes.set(`${p}mlp.up_proj.weight`, [inter, hidden]);
    shapes.set(`${p}mlp.down_proj.weight`, [hidden, inter]);
  }
  shapes.set('model.norm.weight', [hidden]);
  if (!config.tieWordEmbeddings) shapes.set('lm_head.weight', [vocab, hidden]);
  return shapes;
}
