/**
 * A dense MLA causal LM (HF `youtu`, dense `deepseek_v2` / `deepseek_v3`): embedding, per layer
 * RMSNorm → LatentAttentionWithRope → residual, RMSNorm → SwiGLU MLP → residual, final norm,
 * LM head; one PagedKVCache with a storage per layer, one step plan per model step.
 */
import * as tf from '@tensorflow/tfjs-core';
import {KVCacheDtype, KVCacheParams} from '../cache/kv_cache_params.js';
import {PagedKVCache} from '../cache/paged_kv_cache.js';
import {fromHFConfig} from '../config/hf_config.js';
import {LatentAttentionWithRope} from '../layers/latent_attention_with_rope.js';
import {linearProduct, useLinearKernel} from '../layers/linear_policy.js';
import {expectedWeightShapes, showShape, storedWeight} from '../layers/weights.js';
import {checkInteger} from '../ops/check.js';
import {mlaGatherRows, mlaRmsNorm, mlaSwiGLU} from '../ops/mla_ops.js';
import {PackedHalfTensor} from '../precision/packed.js';
import {RotaryEmbedding} from '../rope/rotary_embedding.js';
import {CausalLMConfig, decoderWeightShapes, parseCausalLMConfig} from './config.js';
import {sampleToken, SamplingOptions, seededUniform} from './sampling.js';
import type {GenerateOptions, LMSession, LMTokenizer, ModelWeightDtype} from './types.js';

/** The model's sizes and storage: loadCausalLM's options without the loading ones. */
export interface CausalLMOptions {
  /** Weight storage, default 'bfloat16'. */
  dtype?: ModelWeightDtype;
  /** Latent cache storage, default: dtype. */
  cacheDtype?: KVCacheDtype;
  /** Longest sequence (rope table rows); default min(max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /** Tokens per cache page, default 64. */
  pageSize?: number;
  /** Cache pages shared by all sequences; default ceil(maxSeqLen / pageSize). */
  totalNumPages?: number;
}

/** A weight as fromStateDict takes it: float32, or 16-bit words (loadSafetensors keepHalf). */
export type ModelWeight = tf.Tensor|PackedHalfTensor;

export const DEFAULT_MAX_SEQ_LEN = 4096;
export const DEFAULT_PAGE_SIZE = 64;
/** logits() applies the LM head to this many rows at a time. */
export const LOGIT_ROWS_PER_BLOCK = 64;

const WEIGHT_DTYPES: readonly ModelWeightDtype[] = ['float32', 'bfloat16', 'float16'];

/** Bytes per value of a cache dtype, for the standard-cache comparison. */
const CACHE_VALUE_BYTES: Record<KVCacheDtype, number> = {float32: 4, bfloat16: 2, float16: 2, float8_e4m3fn: 1};

export interface ResolvedOptions {
  dtype: ModelWeightDtype;
  cacheDtype: KVCacheDtype;
  maxSeqLen: number;
  pageSize: number;
  totalNumPages: number;
}

/** The options with their defaults, checked; `caller` names the call in errors. */
export function resolveOptions(options: CausalLMOptions|undefined, config: CausalLMConfig,
                               caller = 'CausalLM'): ResolvedOptions {
  const opts = options ?? {};
  const dtype = opts.dtype ?? 'bfloat16';
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new Error(`${caller} options.dtype: expected 'float32', 'bfloat16' or 'float16', got '${String(dtype)}'`);
  }
  const maxSeqLen = opts.maxSeqLen ?? Math.min(config.maxPositionEmbeddings, DEFAULT_MAX_SEQ_LEN);
  checkInteger(`${caller} options.maxSeqLen`, maxSeqLen, 1);
  const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
  checkInteger(`${caller} options.pageSize`, pageSize, 1);
  const totalNumPages = opts.totalNumPages ?? Math.ceil(maxSeqLen / pageSize);
  checkInteger(`${caller} options.totalNumPages`, totalNumPages, 1);
  // KVCacheParams checks the name.
  return {dtype, cacheDtype: opts.cacheDtype ?? dtype, maxSeqLen, pageSize, totalNumPages};
}

/**
 * Every weight of the model under its HF name ('model.' prefix) with its [out, in] shape: the
 * decoder's and each layer's attention ('model.layers.i.self_attn.…').
 */
export function causalLMWeightShapes(hfConfig: object): Map<string, number[]> {
  const config = parseCausalLMConfig(hfConfig);
  const {args} = fromHFConfig(hfConfig, {maxSeqLen: 1});
  const attention = expectedWeightShapes({
    numHeads: args.numAttentionHeads, hiddenSize: args.hiddenSize, qLoraRank: args.qLoraRank ?? null,
    kvLoraRank: args.kvLoraRank!, qkNopeHeadDim: args.qkNopeHeadDim!, qkRopeHeadDim: args.qkRopeHeadDim!,
    vHeadDim: args.vHeadDim!,
  });
  args.rope.dispose();
  const shapes = decoderWeightShapes(config);
  for (let i = 0; i < config.numLayers; i++) {
    for (const [name, shape] of attention) shapes.set(`model.layers.${i}.self_attn.${name}`, shape);
  }
  return shapes;
}

/** A norm weight as a float32 tensor (exact). */
function storedFloat(weight: ModelWeight): tf.Tensor1D {
  return storedWeight(weight, 'float32') as tf.Tensor1D;
}

interface DecoderLayerWeights {
  inputNorm: tf.Tensor1D;
  postAttentionNorm: tf.Tensor1D;
  gate: tf.Tensor2D;
  up: tf.Tensor2D;
  down: tf.Tensor2D;
}

/** What else a model keeps from its checkpoint. */
export interface CausalLMExtras {
  tokenizer?: LMTokenizer|null;
  /** Default stop tokens of generate (e.g. generation_config.json's eos_token_id); default the config's. */
  stopTokens?: number[];
}

/**
 * A causal LM over LatentAttentionWithRope layers with a paged latent cache. Made by
 * `loadCausalLM` (from a checkpoint) or `CausalLM.fromStateDict` (from tensors).
 */
export class CausalLM {
  readonly config: CausalLMConfig;
  readonly tokenizer: LMTokenizer|null;
  /** Weight storage. */
  readonly dtype: ModelWeightDtype;
  readonly cacheDtype: KVCacheDtype;
  /** Longest sequence: prompt + generated tokens. */
  readonly maxSeqLen: number;
  readonly layers: LatentAttentionWithRope[];
  /** The latent cache of every layer (claim/release are the model's). */
  readonly cache: PagedKVCache;
  readonly rope: RotaryEmbedding;
  /** generate's default stopTokens. */
  readonly defaultStopTokens: readonly number[];
  private readonly embedding: tf.Tensor2D;
  private readonly lmHead: tf.Tensor2D;
  private readonly finalNorm: tf.Tensor1D;
  private readonly decoder: DecoderLayerWeights[];
  private nextSequenceId = 0;
  private disposed = false;

  /**
   * A model from weights by HF names ('model.embed_tokens.weight', 'model.layers.0.self_attn.
   * q_a_proj.weight', …, 'lm_head.weight' unless tied; [out, in]), float32 tensors or
   * PackedHalfTensors. Missing, unexpected or mis-shaped entries throw before anything is made.
   * The model keeps its own tensors (sharing buffers where the storage dtype matches): the
   * caller disposes `weights`.
   */
  static fromStateDict(hfConfig: object, weights: Record<string, ModelWeight>, options: CausalLMOptions = {},
                       extras: CausalLMExtras = {}): CausalLM {
    const config = parseCausalLMConfig(hfConfig);
    const resolved = resolveOptions(options, config);
    const expected = causalLMWeightShapes(hfConfig);
    if (weights === null || typeof weights !== 'object') {
      throw new Error(`CausalLM.fromStateDict weights: expected an object of tensors, got ${String(weights)}`);
    }
    const unexpected = Object.keys(weights).filter((name) => !expected.has(name));
    if (unexpected.length > 0) {
      throw new Error(`CausalLM.fromStateDict weights: unexpected ${unexpected.slice(0, 5).map((n) => `'${n}'`).join(', ')}` +
                      `${unexpected.length > 5 ? ` and ${unexpected.length - 5} more` : ''} (not a weight of this ` +
                      `${config.modelType} config${config.tieWordEmbeddings ? ', whose head is tied to embed_tokens' : ''})`);
    }
    for (const [name, shape] of expected) {
      const weight = weights[name];
      if (weight === undefined) {
        throw new Error(`CausalLM.fromStateDict weights: missing '${name}' of shape ${showShape(shape)}`);
      }
      if (!(weight instanceof tf.Tensor || weight instanceof PackedHalfTensor) || weight.isDisposed) {
        throw new Error(`CausalLM.fromStateDict weights: '${name}' is not a live tf.Tensor or PackedHalfTensor`);
      }
      if (!tf.util.arraysEqual(weight.shape, shape)) {
        throw new Error(`CausalLM.fromStateDict weights: '${name}' has shape ${showShape(weight.shape)}, ` +
                        `expected ${showShape(shape)}`);
      }
    }
    return new CausalLM(hfConfig, config, resolved, weights, extras);
  }

  private constructor(hfConfig: object, config: CausalLMConfig, options: ResolvedOptions,
                      weights: Record<string, ModelWeight>, extras: CausalLMExtras) {
    this.config = config;
    this.tokenizer = extras.tokenizer ?? null;
    this.dtype = options.dtype;
    this.cacheDtype = options.cacheDtype;
    this.maxSeqLen = options.maxSeqLen;
    this.defaultStopTokens = [...(extras.stopTokens ?? config.eosTokenIds)];
    const {rope, args} = fromHFConfig(hfConfig, {maxSeqLen: options.maxSeqLen});
    this.rope = rope;
    const made: Array<{dispose(): unknown}> = [rope];
    try {
      // fromHFConfig's cache shape (headDim L + R) with this model's dtype, pages and layers.
      const kvParams = new KVCacheParams({
        dtype: options.cacheDtype, headDim: args.kvParams.headDim, qkRopeHeadDim: args.qkRopeHeadDim,
        pageSize: options.pageSize, numLayers: config.numLayers,
      });
      this.cache = new PagedKVCache(kvParams, {totalNumPages: options.totalNumPages});
      made.push(this.cache);
      this.layers = [];
      this.decoder = [];
      for (let i = 0; i < config.numLayers; i++) {
        const layer = new LatentAttentionWithRope({...args, kvParams, dtype: this.dtype, oProjDtype: this.dtype});
        made.push(layer);
        const prefix = `model.layers.${i}.self_attn.`;
        const own: Record<string, ModelWeight> = {};
        for (const [name, weight] of Object.entries(weights)) {
          if (name.startsWith(prefix)) own[name.slice(prefix.length)] = weight;
        }
        layer.loadStateDict(own);
        this.layers.push(layer);
        const p = `model.layers.${i}.`;
        const layerWeights: DecoderLayerWeights = {
          inputNorm: storedFloat(weights[`${p}input_layernorm.weight`]),
          postAttentionNorm: storedFloat(weights[`${p}post_attention_layernorm.weight`]),
          gate: storedWeight(weights[`${p}mlp.gate_proj.weight`], this.dtype) as tf.Tensor2D,
          up: storedWeight(weights[`${p}mlp.up_proj.weight`], this.dtype) as tf.Tensor2D,
          down: storedWeight(weights[`${p}mlp.down_proj.weight`], this.dtype) as tf.Tensor2D,
        };
        made.push({dispose: () => Object.values(layerWeights).forEach((t) => t.dispose())});
        this.decoder.push(layerWeights);
      }
      this.embedding = storedWeight(weights['model.embed_tokens.weight'], this.dtype) as tf.Tensor2D;
      made.push(this.embedding);
      this.lmHead = config.tieWordEmbeddings ? this.embedding :
                                               storedWeight(weights['lm_head.weight'], this.dtype) as tf.Tensor2D;
      made.push(this.lmHead);
      this.finalNorm = storedFloat(weights['model.norm.weight']);
    } catch (e) {
      made.forEach((m) => m.dispose());
      throw e;
    }
  }

  // ---- Sizes -------------------------------------------------------------------------------

  /** Bytes of the stored weights (16-bit values count 2 bytes), attention and decoder. */
  get weightBytes(): number {
    this.assertLive('weightBytes');
    const tensors: tf.Tensor[] = [this.embedding, this.finalNorm,
                                  ...this.decoder.flatMap((d) => Object.values(d) as tf.Tensor[])];
    if (this.lmHead !== this.embedding) tensors.push(this.lmHead);
    const layerBytes = this.layers.reduce((sum, layer) =>
        sum + layer.weights.reduce((s, v) => s + v.read().size * 4, 0), 0);
    return layerBytes + tensors.reduce((sum, t) => sum + t.size * 4, 0);
  }

  /** Bytes the latent cache stores per token, all layers. */
  get cacheBytesPerToken(): number {
    return this.config.numLayers * this.cache.params.bytesPerToken;
  }

  /**
   * Bytes per token of a standard cache for the same model in the same dtype: every head's key
   * (nope + rope) and value, all layers (what stacks without MLA's latent cache keep).
   */
  get standardCacheBytesPerToken(): number {
    const layer = this.layers[0];
    const perHead = layer.qkNopeHeadDim + layer.qkRopeHeadDim + layer.vHeadDim;
    return this.config.numLayers * layer.numAttentionHeads * perHead * CACHE_VALUE_BYTES[this.cacheDtype];
  }

  // ---- Running -----------------------------------------------------------------------------

  /**
   * The logits of every position of `ids` as a fresh sequence: [ids.length × vocab], row t the
   * distribution of token t + 1.
   */
  async logits(ids: number[]): Promise<Float32Array> {
    this.assertLive('logits');
    this.checkIds('logits ids', ids);
    this.checkCapacity('logits ids', [{rows: ids.length, seqId: null}]);
    const seqId = this.claimSequence();
    try {
      // The final hidden rows, then the head over blocks of rows: [T, vocab] never sits on the
      // device at once (4,096 tokens × a 128k vocabulary would be 2 GB).
      const hidden = this.step([seqId], [ids], 'hidden');
      const vocab = this.config.vocabSize;
      const out = new Float32Array(ids.length * vocab);
      try {
        for (let start = 0; start < ids.length; start += LOGIT_ROWS_PER_BLOCK) {
          const rows = Math.min(LOGIT_ROWS_PER_BLOCK, ids.length - start);
          const block = tf.tidy(() => this.head(tf.slice(hidden, [start, 0], [rows, -1])));
          try {
            out.set(await block.data() as Float32Array, start * vocab);
          } finally {
            block.dispose();
          }
        }
      } finally {
        hidden.dispose();
      }
      return out;
    } finally {
      if (!this.disposed) this.cache.release(seqId);
    }
  }

  /**
   * New tokens for each prompt, all prompts in one ragged batch: one prefill step, then one
   * decode step per token for the sequences still running. Greedy at temperature 0, seeded
   * sampling otherwise; a sequence stops at maxNewTokens or after a stop token (kept in its
   * output). `onToken(token, promptIndex)` sees every token as soon as it is chosen.
   */
  async generate(prompts: number[][], options: GenerateOptions): Promise<number[][]> {
    this.assertLive('generate');
    if (!Array.isArray(prompts) || prompts.length === 0) {
      throw new Error(`generate prompts: expected a non-empty array of token-id arrays, got ${describe(prompts)}`);
    }
    prompts.forEach((prompt, i) => this.checkIds(`generate prompts[${i}]`, prompt));
    const opts = this.checkGenerateOptions(options);
    // The last new token is not fed back: each sequence writes prompt + maxNewTokens − 1 rows.
    this.checkCapacity('generate prompts', prompts.map((p) => ({rows: p.length + opts.maxNewTokens - 1, seqId: null})),
                       opts.maxNewTokens);
    const seqIds = prompts.map(() => this.claimSequence());
    try {
      return await this.runGeneration(seqIds, prompts.map((p) => [...p]), opts);
    } finally {
      if (!this.disposed) seqIds.forEach((seqId) => this.cache.release(seqId));
    }
  }

  /**
   * A sequence that stays in the cache between generate calls — a conversation: each call feeds
   * only the tokens that are new since the last one (the last generated token, then `input`), so
   * earlier turns are not prefilled again. Dispose it to free its pages.
   */
  createSession(): LMSession {
    this.assertLive('createSession');
    const seqId = this.claimSequence();
    const tokens: number[] = [];   // the sequence so far
    let cached = 0;                // how many of them are in the cache
    let state: 'idle'|'running'|'failed'|'disposed' = 'idle';
    const assertUsable = (what: string) => {
      if (state === 'disposed' || this.disposed) throw new Error(`LMSession ${what}: the session has been disposed`);
      if (state === 'running') throw new Error(`LMSession ${what}: a generate of this session is still running (await it first)`);
      if (state === 'failed') {
        throw new Error(`LMSession ${what}: an earlier generate of this session failed; its cache rows are ` +
                        `undefined: dispose it and create a new session`);
      }
    };
    return {
      get tokens() {
        return [...tokens];
      },
      generate: async (input: number[], options: GenerateOptions) => {
        assertUsable('generate');
        if (!Array.isArray(input) || (input.length === 0 && tokens.length === 0)) {
          throw new Error(`LMSession generate input: expected an array of token ids (non-empty for a new ` +
                          `session), got ${describe(input)}`);
        }
        if (input.length > 0) this.checkIds('LMSession generate input', input);
        const opts = this.checkGenerateOptions(options);
        const feed = [...tokens.slice(cached), ...input];
        this.checkCapacity('LMSession generate input',
                           [{rows: cached + feed.length + opts.maxNewTokens - 1, seqId}], opts.maxNewTokens);
        state = 'running';
        try {
          const [out] = await this.runGeneration([seqId], [feed], {...opts, onToken: opts.onToken &&
                                                                   ((token: number) => opts.onToken!(token, 0))});
          tokens.push(...input, ...out);
          cached = tokens.length - 1;  // the last new token is not fed yet
          state = 'idle';
          return out;
        } catch (e) {
          state = 'failed';
          throw e;
        }
      },
      dispose: () => {
        if (state === 'disposed') return;
        state = 'disposed';
        if (!this.disposed && this.cache.contains(seqId)) this.cache.release(seqId);
      },
    };
  }

  /**
   * The decode loop of generate: inputs[b] are sequence seqIds[b]'s tokens to feed first; then
   * one token per running sequence per step. The new tokens per sequence.
   */
  private async runGeneration(seqIds: number[], inputs: number[][], opts: CheckedGenerateOptions): Promise<number[][]> {
    const out: number[][] = seqIds.map(() => []);
    const uniform = seededUniform(opts.seed);
    let active = seqIds.map((_, i) => i);
    let feed = inputs;
    while (active.length > 0) {
      const logits = this.step(active.map((i) => seqIds[i]), feed, 'lastLogits');
      const chosen = await this.choose(logits, opts, uniform);
      const next: number[] = [];
      chosen.forEach((token, k) => {
        const i = active[k];
        out[i].push(token);
        opts.onToken?.(token, i);
        if (!opts.stopTokens.has(token) && out[i].length < opts.maxNewTokens) next.push(i);
      });
      active = next;
      feed = next.map((i) => [out[i][out[i].length - 1]]);
    }
    return out;
  }

  /** Frees the weights, the cache and the rope table. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.layers.forEach((layer) => layer.dispose());
    this.decoder.forEach((d) => Object.values(d).forEach((t: tf.Tensor) => t.dispose()));
    this.embedding.dispose();
    if (this.lmHead !== this.embedding) this.lmHead.dispose();
    this.finalNorm.dispose();
    this.cache.dispose();
    this.rope.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * One model step: tokens[b] are the new tokens of sequence seqIds[b]. Returns the logits of
   * each sequence's last new token ('lastLogits') or the final hidden rows of every new token
   * ('hidden', before the final norm); commits the tokens to the cache. On an error the cache
   * is as before.
   */
  private step(seqIds: number[], tokens: number[][], output: 'lastLogits'|'hidden'): tf.Tensor2D {
    const counts = tokens.map((t) => t.length);
    const collection = this.cache.fetch(seqIds, counts);
    let result: tf.Tensor2D;
    try {
      result = tf.tidy(() => {
        const offsets = [0];
        for (const count of counts) offsets.push(offsets[offsets.length - 1] + count);
        let x = this.embed(tf.tensor1d(tokens.flat(), 'int32'));
        const eps = this.config.rmsNormEps;
        this.layers.forEach((layer, i) => {
          const weights = this.decoder[i];
          const h = mlaRmsNorm(x, weights.inputNorm, eps);
          // Both residual adds happen inside the products (o_proj's and down_proj's).
          x = layer.forward(h, {kvCollection: collection, inputRowOffsets: offsets, layerIdx: i, residual: x});
          x = this.mlp(x, weights);
        });
        if (output === 'hidden') return x;
        const lastRows = offsets.slice(1).map((o) => o - 1);
        return this.head(counts.every((c) => c === 1) ? x : tf.gather(x, tf.tensor1d(lastRows, 'int32')));
      });
    } catch (e) {
      this.cache.rollback(collection);
      throw e;
    }
    this.cache.step(seqIds, counts);
    return result;
  }

  /** Logits of final hidden rows: the LM head with model.norm in its prologue. */
  private head(x: tf.Tensor2D): tf.Tensor2D {
    return this.linear(x, this.lmHead, {gamma: this.finalNorm});
  }

  /** Embedding rows of `ids` [T] → float32 [T, hidden] (16-bit rows widened by MLAGatherRows). */
  private embed(ids: tf.Tensor1D): tf.Tensor2D {
    if (this.dtype === 'float32') return tf.gather(this.embedding, ids);
    const {vocabSize, hiddenSize} = this.config;
    // The table as a one-row-per-page cache: slot = token id.
    return mlaGatherRows(tf.reshape(this.embedding, [vocabSize, 1, hiddenSize / 2]), ids,
                         {cacheDtype: this.dtype, columns: hiddenSize});
  }

  /**
   * x · wᵀ — x first RMS-normalized with `gamma`, output columns past w's from `w2`, `residual`
   * added, each when given: one MLALinear for 16-bit weights, decode steps and software adapters
   * (linearProduct, the layer's policy); else tf ops.
   */
  private linear(x: tf.Tensor2D, w: tf.Tensor2D,
                 {gamma, w2, residual}: {gamma?: tf.Tensor1D, w2?: tf.Tensor2D, residual?: tf.Tensor2D} = {}): tf.Tensor2D {
    return linearProduct(x, w, useLinearKernel(x.shape[0]), {
      weightDtype: this.dtype, ...(gamma ? {gamma, normEps: this.config.rmsNormEps} : {}), ...(w2 ? {w2} : {}),
      ...(residual ? {residual} : {}),
    });
  }

  /** x + down(silu(gate(h)) · up(h)) with h = post_attention_layernorm(x). */
  private mlp(x: tf.Tensor2D, weights: DecoderLayerWeights): tf.Tensor2D {
    const gateUp = this.linear(x, weights.gate, {gamma: weights.postAttentionNorm, w2: weights.up});
    return this.linear(mlaSwiGLU(gateUp), weights.down, {residual: x});
  }

  /** The next token of each row of `logits` (disposed here). */
  private async choose(logits: tf.Tensor2D, opts: CheckedGenerateOptions, uniform: () => number): Promise<number[]> {
    try {
      if (opts.sampling === null) {
        const best = tf.argMax(logits, 1);
        try {
          return Array.from(await best.data());
        } finally {
          best.dispose();
        }
      }
      const values = await logits.data() as Float32Array;
      const vocab = this.config.vocabSize;
      const tokens: number[] = [];
      for (let r = 0; r < logits.shape[0]; r++) {
        tokens.push(sampleToken(values.subarray(r * vocab, (r + 1) * vocab), opts.sampling, uniform));
      }
      return tokens;
    } finally {
      logits.dispose();
    }
  }

  // ---- Checks ------------------------------------------------------------------------------

  private claimSequence(): number {
    const seqId = this.nextSequenceId++;
    this.cache.claim(seqId);
    return seqId;
  }

  private assertLive(what: string): void {
    if (this.disposed) throw new Error(`CausalLM ${what}: the model has been disposed`);
  }

  private checkIds(what: string, ids: unknown): void {
    if (!Array.isArray(ids) || ids.length === 0) {
      throw new Error(`${what}: expected a non-empty array of token ids, got ${describe(ids)}`);
    }
    const vocab = this.config.vocabSize;
    ids.forEach((id, i) => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new Error(`${what}[${i}]: expected a token id in [0, ${vocab}), got ${describe(id)}`);
      }
    });
  }

  /**
   * Whether sequences that will hold `rows` cache rows fit the rope table and the free pages
   * (a sequence already in the cache, `seqId`, has some of its pages).
   */
  private checkCapacity(what: string, sequences: Array<{rows: number, seqId: number|null}>, maxNewTokens?: number): void {
    const more = maxNewTokens === undefined ? '' : ` + maxNewTokens ${maxNewTokens} − 1`;
    const lengths = sequences.map((s) => s.rows);
    lengths.forEach((length, i) => {
      if (length > this.maxSeqLen) {
        throw new Error(`${what}${lengths.length > 1 || maxNewTokens !== undefined ? `[${i}]` : ''}: ` +
                        `${length} tokens (prompt${more}) exceed the model's maxSeqLen ${this.maxSeqLen} ` +
                        `(a loadCausalLM option)`);
      }
    });
    const pageSize = this.cache.params.pageSize;
    const pages = sequences.reduce((sum, {rows, seqId}) =>
        sum + Math.ceil(rows / pageSize) - (seqId === null ? 0 : this.cache.pagesOf(seqId).length), 0);
    if (pages > this.cache.numFreePages) {
      throw new Error(`${what}: the cache is too small: ${lengths.length} sequence(s) of ` +
                      `${lengths.join(', ')} tokens (prompt${more}) need ${pages} more pages of ${pageSize} ` +
                      `tokens, ${this.cache.numFreePages} are free (totalNumPages ${this.cache.totalNumPages}, ` +
                      `a loadCausalLM option)`);
    }
  }

  private checkGenerateOptions(options: GenerateOptions): CheckedGenerateOptions {
    if (options === null || typeof options !== 'object') {
      throw new Error(`generate options: expected {maxNewTokens, …}, got ${describe(options)}`);
    }
    const {maxNewTokens, temperature = 0, topK, topP = 1, seed, stopTokens, onToken} = options;
    checkInteger('generate options.maxNewTokens', maxNewTokens, 1);
    if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) {
      throw new Error(`generate options.temperature: expected a finite number ≥ 0, got ${describe(temperature)}`);
    }
    if (topK !== undefined) checkInteger('generate options.topK', topK, 1);
    if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
      throw new Error(`generate options.topP: expected a number in (0, 1], got ${describe(topP)}`);
    }
    if (seed !== undefined) checkInteger('generate options.seed', seed, 0);
    const stops = stopTokens ?? this.defaultStopTokens;
    if (!Array.isArray(stops) || stops.some((t) => !Number.isInteger(t))) {
      throw new Error(`generate options.stopTokens: expected an array of token ids, got ${describe(stopTokens)}`);
    }
    if (onToken !== undefined && typeof onToken !== 'function') {
      throw new Error(`generate options.onToken: expected a function, got ${describe(onToken)}`);
    }
    return {
      maxNewTokens,
      sampling: temperature === 0 ? null : {temperature, topK: topK ?? null, topP},
      seed: seed ?? Math.floor(Math.random() * 2 ** 32),
      stopTokens: new Set(stops),
      onToken,
    };
  }
}

interface CheckedGenerateOptions {
  maxNewTokens: number;
  /** null: greedy. */
  sampling: SamplingOptions|null;
  seed: number;
  stopTokens: Set<number>;
  onToken?: (token: number, sequence: number) => void;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  if (typeof value === 'function') return 'a function';
  if (value !== null && typeof value === 'object') return 'an object';
  return String(value);
}

