import * as tf from '@tensorflow/tfjs-core';
import {layers, initializers, LayerVariable} from '@tensorflow/tfjs-layers';
import {KVCacheParams} from '../cache/kv_cache_params.js';
import {KVCollection} from '../cache/paged_kv_cache.js';
import {checkInteger} from '../ops/check.js';
import {assertSupportedBackend} from '../ops/backend_check.js';
import {RotaryEmbedding, ropeFromConfig} from '../rope/rotary_embedding.js';
import {AttentionParts, attendWithoutCache, cachedStep} from './attention.js';
import {GraphMode, LatentAttentionWithRopeArgs, MLA_DECODE_MAX_NEW_TOKENS, MLADims, resolveArgs} from './config.js';
import {MLAPrefillMetadata, prefillChunks} from './prefill_metadata.js';
import {DeviceRef, ShardingStrategy} from './sharding.js';
import {checkCollection, checkOffsets, checkPositions, checkPrefillMetadata} from './step_checks.js';
import {samePrefillMetadata} from '../cache/step_plan.js';
import {AbsorbedWeightCache, AbsorbedWeights, expectedWeightShapes, headBlock, HFWeightName, kvBHeads,
        showShape, storageDtypeOf, storedShape, storedWeight} from './weights.js';
import type {WeightDtype} from '../kernels/kernel_names.js';
import {mlaPackHalf, mlaUnpackHalf} from '../ops/mla_ops.js';
import {PackedHalfTensor} from '../precision/packed.js';
import '../register.js';

export {MLA_DECODE_MAX_NEW_TOKENS} from './config.js';
export type {GraphMode, LatentAttentionWithRopeArgs} from './config.js';
export type {HFWeightName} from './weights.js';

export interface ForwardOptions {
  kvCollection: KVCollection;
  /** [B + 1]: sequence b owns rows [off[b], off[b+1]) of x. */
  inputRowOffsets: tf.Tensor1D|number[];
  layerIdx?: number;
  prefillMetadata?: MLAPrefillMetadata;
  /**
   * [T, hiddenSize]: added to the output (a decoder's residual stream, x + attention(norm(x))),
   * in o_proj's kernel where MLALinear runs it, so the sum costs no dispatch of its own.
   */
  residual?: tf.Tensor2D;
}

/**
 * Multi-head Latent Attention with RoPE (DeepSeek-V2/V3), MAX's `LatentAttentionWithRope` on
 * tfjs: `forward` runs one step of a ragged batch against a paged latent cache; `apply` on
 * `[batch, seq, hidden]` runs causal attention without a cache (usable in tf.model).
 *
 * This class is the tfjs glue: arguments are in config.ts, weights in weights.ts, the step's
 * checks in step_checks.ts, the step plan in ../cache/step_plan.ts, the compute graphs in
 * attention.ts and the MLALinear-or-matMul choice in linear_policy.ts.
 */
export class LatentAttentionWithRope extends layers.Layer {
  static className = 'LatentAttentionWithRope';

  readonly rope: RotaryEmbedding;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  readonly hiddenSize: number;
  readonly kvParams: KVCacheParams;
  readonly devices: DeviceRef[];
  readonly qLoraRank: number|null;
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
  readonly bufferSize: number;
  readonly graphMode: GraphMode;
  readonly rmsNormEps: number;
  /**
   * The `dtype` option: storage of the projection weights (and W_UK / W_UV), float32 or 16-bit
   * packed. (tfjs's own `layer.dtype` stays the compute dtype, float32.)
   */
  readonly weightDtype: WeightDtype;
  readonly oProjDtype: WeightDtype;
  /** The norm weights' values are rounded to this (they stay float32 tensors). */
  readonly normDtype: WeightDtype;
  /** The base scale as given (null: (N+R)^−0.5). */
  readonly scaleArg: number|null;
  private readonly dims: MLADims;
  private readonly weightVars = new Map<HFWeightName, LayerVariable>();
  private readonly absorbedCache = new AbsorbedWeightCache();
  /** While loadStateDict builds the layer: 16-bit words to start weights from. */
  private initialWords: Map<HFWeightName, tf.Tensor>|null = null;
  private readonly parts: AttentionParts;
  private strategy: ShardingStrategy|null = null;
  private isDisposedLayer = false;

  constructor(args: LatentAttentionWithRopeArgs) {
    super({name: args?.name, trainable: args?.trainable, dtype: 'float32'} as ConstructorParameters<typeof layers.Layer>[0]);
    const resolved = resolveArgs(args);
    this.rope = resolved.rope;
    this.numAttentionHeads = resolved.numHeads;
    this.numKeyValueHeads = resolved.numKeyValueHeads;
    this.hiddenSize = resolved.hiddenSize;
    this.kvParams = resolved.kvParams;
    this.devices = resolved.devices;
    this.qLoraRank = resolved.qLoraRank;
    this.kvLoraRank = resolved.kvLoraRank;
    this.qkNopeHeadDim = resolved.qkNopeHeadDim;
    this.qkRopeHeadDim = resolved.qkRopeHeadDim;
    this.vHeadDim = resolved.vHeadDim;
    this.bufferSize = resolved.bufferSize;
    this.graphMode = resolved.graphMode;
    this.rmsNormEps = resolved.rmsNormEps;
    this.scaleArg = resolved.scaleArg;
    this.weightDtype = resolved.dtype;
    this.oProjDtype = resolved.oProjDtype;
    this.normDtype = resolved.normDtype;
    this.dims = {
      numHeads: this.numAttentionHeads, hiddenSize: this.hiddenSize, qLoraRank: this.qLoraRank,
      kvLoraRank: this.kvLoraRank, qkNopeHeadDim: this.qkNopeHeadDim,
      qkRopeHeadDim: this.qkRopeHeadDim, vHeadDim: this.vHeadDim,
    };
    const layer = this;
    this.parts = {
      dims: this.dims, rope: this.rope, rmsNormEps: this.rmsNormEps, bufferSize: this.bufferSize,
      get scale() {
        return layer.scale;
      },
      weight: (name) => this.weight(name),
      weightDtype: (name) => this.storageDtype(name),
      absorbed: () => this.absorbedWeights(),
    };
  }

  // ---- Shapes and weights ------------------------------------------------------------------

  /** λ: the softmax scale (the YaRN mscale² included). */
  get scale(): number {
    return this.rope.computeScale(this.scaleArg ?? 1 / Math.sqrt(this.qkNopeHeadDim + this.qkRopeHeadDim));
  }

  /** The HF weights of this configuration and their [out, in] shapes. */
  expectedWeightShapes(): Map<HFWeightName, number[]> {
    return expectedWeightShapes(this.dims);
  }

  /** Creates the weights (random normal 0.02, norms at 1), as any tfjs layer on first apply. */
  override build(inputShape: tf.serialization.ConfigDictValue|(number|null)[]|(number|null)[][]): void {
    void inputShape;
    if (this.built) return;
    this.assertLive();
    // Weight names are '<layer name>/<HF name>' whether tfjs builds the layer (inside its name
    // scope, in apply) or loadStateDict does (outside any scope): unique across layers, stable
    // for save/load.
    const scopePrefix = this.currentNameScopePrefix();
    const namePrefix = scopePrefix.endsWith(`${this.name}/`) ? '' : `${this.name}/`;
    for (const [name, shape] of this.expectedWeightShapes()) {
      const dtype = this.storageDtype(name);
      if (dtype === 'float32') {
        const initializer = name.endsWith('layernorm.weight') ? initializers.ones() :
                                                               initializers.randomNormal({stddev: 0.02});
        this.weightVars.set(name, this.addWeight(namePrefix + name, shape, 'float32', initializer));
      } else {
        // 16-bit: int32 words, not trainable (inference-only): the words loadStateDict was given,
        // else initialized like float32 ones (random normal 0.02, rounded).
        const words = this.initialWords?.get(name);
        const initializer = {apply: () => words !== undefined ? tf.clone(words) :
                                 tf.tidy(() => mlaPackHalf(tf.randomNormal(shape, 0, 0.02), dtype))};
        this.weightVars.set(name, this.addWeight(namePrefix + name, storedShape(shape, dtype), 'int32',
                                                 initializer as unknown as ReturnType<typeof initializers.zeros>,
                                                 undefined, false));
      }
    }
    this.built = true;
  }

  /** How weight `name` is stored. */
  private storageDtype(name: HFWeightName): WeightDtype {
    return storageDtypeOf(name, {dtype: this.weightDtype, oProjDtype: this.oProjDtype});
  }

  /** The tfjs-layers name scope in effect (not exported by tfjs-layers, so read off a probe). */
  private currentNameScopePrefix(): string {
    const probeName = 'tfjs_mla_scope_probe';
    const init = tf.scalar(0);
    const probe = new LayerVariable(init, 'float32', probeName, false);
    const prefix = probe.originalName.slice(0, probe.originalName.length - probeName.length);
    probe.dispose();
    init.dispose();
    return prefix;
  }

  /**
   * Loads HF weights (names without a prefix, [out, in]). Missing, unexpected or mis-shaped
   * entries throw before anything is written. The layer keeps its own copy.
   *
   * An entry may be a PackedHalfTensor (`loadSafetensors(…, {keepHalf: true})`), validated by
   * its logical shape: one of the weight's storage dtype is stored as it is (no rounding, no
   * float32 copy); any other is widened exactly (a float32 copy of that one weight while it is
   * stored) and then stored as a float32 tensor would be.
   */
  loadStateDict(weights: Record<string, tf.Tensor|PackedHalfTensor>): void {
    this.assertLive();
    const expected = this.expectedWeightShapes();
    if (weights === null || typeof weights !== 'object') {
      throw new Error(`loadStateDict weights: expected an object of tensors, got ${weights}`);
    }
    for (const name of Object.keys(weights)) {
      if (!expected.has(name as HFWeightName)) {
        throw new Error(`loadStateDict: unexpected weight '${name}' (expected: ` +
                        `${[...expected.keys()].join(', ')})`);
      }
    }
    for (const [name, shape] of expected) {
      const tensor = weights[name];
      if (tensor === undefined) {
        throw new Error(`loadStateDict: missing weight '${name}' of shape ${showShape(shape)}`);
      }
      if (!(tensor instanceof tf.Tensor || tensor instanceof PackedHalfTensor) || tensor.isDisposed) {
        throw new Error(`loadStateDict: weight '${name}' is not a live tf.Tensor or PackedHalfTensor`);
      }
      if (!tf.util.arraysEqual(tensor.shape, shape)) {
        const what = tensor instanceof PackedHalfTensor ? ` (a ${tensor.dtype} PackedHalfTensor)` : '';
        throw new Error(`loadStateDict: weight '${name}' has shape ${showShape(tensor.shape)}${what}, ` +
                        `expected ${showShape(shape)}`);
      }
    }
    if (!this.built) {
      // Built here, a 16-bit weight whose words are given starts as them (no random or zero
      // init: loading a bf16 checkpoint holds about 1× the weight bytes, not 2–3×).
      this.initialWords = new Map();
      for (const [name] of expected) {
        const given = weights[name];
        if (given instanceof PackedHalfTensor && given.dtype === this.storageDtype(name)) {
          this.initialWords.set(name, given.words);
        }
      }
    }
    try {
      this.build([null, this.hiddenSize]);
    } finally {
      this.initialWords = null;
    }
    for (const [name] of expected) {
      const dtype = this.storageDtype(name);
      const given = weights[name];
      if (given instanceof PackedHalfTensor && given.dtype === dtype) {
        const variable = this.weightVars.get(name)!;
        // The same bits: shared, never touched (already so when build started from them).
        if (variable.read().dataId !== given.words.dataId) variable.write(given.words);
        continue;
      }
      const value = tf.tidy(() => {
        const stored = storedWeight(given, dtype);  // 16-bit: rounded to nearest-even
        // Norm weights keep float32 tensors with values of normDtype.
        return dtype === 'float32' && name.endsWith('layernorm.weight') && this.normDtype !== 'float32' ?
            mlaUnpackHalf(mlaPackHalf(stored, this.normDtype), this.normDtype) : stored;
      });
      this.weightVars.get(name)!.write(value);
      value.dispose();
    }
    this.clearAbsorbedWeights();
  }

  /**
   * Copies of the weights under their HF names, float32 [out, in] holding the stored values
   * exactly (16-bit weights widened). The caller owns and disposes them.
   */
  stateDict(): Record<string, tf.Tensor> {
    this.assertWeightsReady('stateDict');
    const out: Record<string, tf.Tensor> = {};
    for (const [name] of this.weightVars) out[name] = this.floatWeight(name);
    return out;
  }

  /** Weight `name` as a new float32 [out, in] tensor (widened from 16 bits when stored so). */
  private floatWeight(name: HFWeightName): tf.Tensor {
    const dtype = this.storageDtype(name);
    const stored = this.weight(name);
    return dtype === 'float32' ? tf.clone(stored) : mlaUnpackHalf(stored, dtype);
  }

  private weight(name: HFWeightName): tf.Tensor {
    return this.weightVars.get(name)!.read();
  }

  /** [H·N, L]: wK[h·N + d, l] = kv_b_proj[h·(N+V) + d, l]. A new tensor: dispose it. */
  get wK(): tf.Tensor2D {
    return tf.tidy(() => tf.reshape(this.kvBHeads('wK', 0, this.qkNopeHeadDim),
                                     [this.numAttentionHeads * this.qkNopeHeadDim, this.kvLoraRank]));
  }

  /** [H, N, L] (the documented shape): wUk[h, d, l] = kv_b_proj[h·(N+V) + d, l]. A new tensor. */
  get wUk(): tf.Tensor3D {
    return this.kvBHeads('wUk', 0, this.qkNopeHeadDim);
  }

  /** [H, L, V] (the documented shape): wUv[h, l, e] = kv_b_proj[h·(N+V) + N + e, l]. A new tensor. */
  get wUv(): tf.Tensor3D {
    return tf.tidy(() => tf.transpose(
        this.kvBHeads('wUv', this.qkNopeHeadDim, this.vHeadDim), [0, 2, 1]));
  }

  /**
   * [(Q or H·(N+R)) + L + R, hidden]: q_a_proj (or q_proj) rows, then kv_a_proj_with_mqa. A new
   * tensor. (The layer's own fused projection reads the two weights in one MLALinear
   * dispatch without making this copy.)
   */
  get wqkv(): tf.Tensor2D {
    this.assertWeightsReady('wqkv');
    return tf.tidy(() => tf.concat([this.floatWeight(this.qLoraRank === null ? 'q_proj.weight' : 'q_a_proj.weight'),
                                    this.floatWeight('kv_a_proj_with_mqa.weight')], 0) as tf.Tensor2D);
  }

  private kvBHeads(what: string, start: number, size: number): tf.Tensor3D {
    this.assertWeightsReady(what);
    return tf.tidy(() => kvBHeads(this.dims, this.floatWeight('kv_b_proj.weight'), start, size));
  }

  /** W_UK and W_UV for the absorbed path (in the layer's dtype), kept until kv_b_proj changes. */
  private absorbedWeights(): AbsorbedWeights {
    return this.absorbedCache.get(this.dims, this.weight('kv_b_proj.weight'), this.storageDtype('kv_b_proj.weight'));
  }

  private clearAbsorbedWeights(): void {
    this.absorbedCache.clear();
  }

  // ---- Sharding ----------------------------------------------------------------------------

  get shardingStrategy(): ShardingStrategy|null {
    return this.strategy;
  }

  set shardingStrategy(strategy: ShardingStrategy|null) {
    if (strategy !== null && !(strategy instanceof ShardingStrategy)) {
      throw new Error(`shardingStrategy: expected ShardingStrategy.tensorParallel(n) or ` +
                      `.replicate(n), got ${typeof strategy}`);
    }
    if (strategy !== null && strategy.isTensorParallel &&
        this.numAttentionHeads % strategy.numDevices !== 0) {
      throw new Error(`shardingStrategy: tensorParallel(${strategy.numDevices}) needs a device count ` +
                      `that divides numAttentionHeads ${this.numAttentionHeads}`);
    }
    this.strategy = strategy;
  }

  /**
   * One layer per device. tensorParallel(n): shard i holds heads [i·H/n, (i+1)·H/n) with the
   * matching q/kv_b rows and o_proj columns; the sum of the shards' outputs is this layer's
   * output. replicate(n): full copies. Each shard runs with its own cache.
   */
  shard(devices: DeviceRef[]): LatentAttentionWithRope[] {
    this.assertWeightsReady('shard');
    if (this.strategy === null) {
      throw new Error('shard: set layer.shardingStrategy (ShardingStrategy.tensorParallel(n) or ' +
                      '.replicate(n)) first');
    }
    if (!Array.isArray(devices) || devices.length !== this.strategy.numDevices ||
        !devices.every((d) => d instanceof DeviceRef)) {
      throw new Error(`shard devices: expected ${this.strategy.numDevices} DeviceRef, got ` +
                      `${Array.isArray(devices) ? devices.length + ' entries' : typeof devices}`);
    }
    const numShards = devices.length;
    const tensorParallel = this.strategy.isTensorParallel;
    const headsPerShard = tensorParallel ? this.numAttentionHeads / numShards : this.numAttentionHeads;
    return devices.map((device, i) => {
      const shard = new LatentAttentionWithRope({
        ...this.constructorArgs(),
        numAttentionHeads: headsPerShard,
        devices: [device],
        name: `${this.name}_shard${i}`,
      });
      const weights = tf.tidy(() => {
        const out: Record<string, tf.Tensor> = {};
        for (const [name] of this.weightVars) {
          const value = this.floatWeight(name);  // exact: the shard rounds to the same values
          out[name] = tensorParallel ? headBlock(this.dims, name, value, i * headsPerShard, headsPerShard) : value;
        }
        return out;
      });
      shard.loadStateDict(weights);
      Object.values(weights).forEach((w) => w.dispose());
      return shard;
    });
  }

  // ---- Running -----------------------------------------------------------------------------

  /** MAX's prefill plan for this step (see MLAPrefillMetadata). */
  createMlaPrefillMetadata(inputRowOffsets: tf.Tensor1D|number[], kvCollection: KVCollection):
      MLAPrefillMetadata {
    checkCollection(kvCollection, this.kvLoraRank + this.qkRopeHeadDim);
    checkOffsets(inputRowOffsets, kvCollection.plan, kvCollection, null);
    return kvCollection.plan.prefillMetadata(this.bufferSize);
  }

  /**
   * One step over a ragged batch: x [T, hidden] holds the new tokens of every sequence of
   * `kvCollection` (from `cache.fetch`); their latent rows are written into the cache, and the
   * result is [T, hidden]. Call `cache.step` afterwards to commit the tokens. Every layer of a
   * step shares the step's plan (kvCollection.plan): its tensors are uploaded once.
   */
  forward(x: tf.Tensor2D, options: ForwardOptions): tf.Tensor2D {
    try {
      return this.runStep(x, options);
    } catch (error) {
      // A failed step leaves the cache as before its fetch: the reserved pages go back.
      const collection = options?.kvCollection;
      if (collection instanceof KVCollection && !collection.cache.isDisposed) {
        collection.cache.rollback(collection);
      }
      throw error;
    }
  }

  private runStep(x: tf.Tensor2D, options: ForwardOptions): tf.Tensor2D {
    this.assertWeightsReady('forward');
    assertSupportedBackend('LatentAttentionWithRope forward');
    if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[1] !== this.hiddenSize) {
      const got = x instanceof tf.Tensor ? showShape(x.shape) : typeof x;
      throw new Error(`forward x: expected shape [T, ${this.hiddenSize}], got ${got}`);
    }
    if (options === undefined || options === null) {
      throw new Error('forward options: expected {kvCollection, inputRowOffsets}, got ' + options);
    }
    const layerIdx = options.layerIdx ?? 0;
    const collection = options.kvCollection;
    checkCollection(collection, this.kvLoraRank + this.qkRopeHeadDim);
    checkInteger('forward layerIdx', layerIdx, 0, collection.params.numLayers - 1);
    // Positions and reserved pages first: the plan reads each token's slot off the page table.
    checkPositions(collection, this.rope);
    const plan = collection.plan;
    checkOffsets(options.inputRowOffsets, plan, collection, x.shape[0]);
    const residual = options.residual ?? null;
    if (residual !== null && (!(residual instanceof tf.Tensor) || residual.dtype !== 'float32' ||
                              !tf.util.arraysEqual(residual.shape, x.shape))) {
      const got = residual instanceof tf.Tensor ? `${residual.dtype} ${showShape(residual.shape)}` : typeof residual;
      throw new Error(`forward residual: expected a float32 tensor of x's shape ${showShape(x.shape)}, got ${got}`);
    }
    if (plan.numTokens === 0) return tf.zeros([0, this.hiddenSize]);
    const useDecodePath = this.graphMode === 'decode' ||
        (this.graphMode === 'auto' && plan.maxNewTokens <= MLA_DECODE_MAX_NEW_TOKENS);
    const cache = collection.storage(layerIdx);
    const cacheDtype = collection.params.dtype;
    if (useDecodePath) return tf.tidy(() => cachedStep(this.parts, x, cache, cacheDtype, plan, null, residual));
    const given = options.prefillMetadata;
    if (given !== undefined) checkPrefillMetadata(given, plan, collection, this.bufferSize);
    if (given === undefined || samePrefillMetadata(given, plan.prefillMetadata(this.bufferSize))) {
      return tf.tidy(() => cachedStep(this.parts, x, cache, cacheDtype, plan, plan.prefill(this.bufferSize).tensors,
                                      residual));
    }
    // A valid plan of this step with other chunking: its tensors live for this call only.
    return tf.tidy(() => cachedStep(this.parts, x, cache, cacheDtype, plan, prefillChunks(
        given, plan.contexts, (b, k) => collection.slotOf(b, k)).map((chunk) => ({
          slots: tf.tensor1d(chunk.slots, 'int32'),
          chunkInfo: tf.tensor2d(chunk.chunkInfo, [collection.batchSize, 3], 'int32'),
        })), residual));
  }

  /** tfjs entry: with `kwargs.kvCollection` a cached step (as forward); else causal attention. */
  override call(inputs: tf.Tensor|tf.Tensor[], kwargs: {[key: string]: unknown}): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (kwargs !== undefined && kwargs.kvCollection !== undefined) {
      return this.forward(x as tf.Tensor2D, kwargs as unknown as ForwardOptions);
    }
    this.assertWeightsReady('apply');
    assertSupportedBackend('LatentAttentionWithRope apply');
    if ((x.rank !== 3 && x.rank !== 2) || x.shape[x.rank - 1] !== this.hiddenSize) {
      throw new Error(`apply x: expected shape [batch, seq, ${this.hiddenSize}] (or [seq, ` +
                      `${this.hiddenSize}]), got ${showShape(x.shape)}`);
    }
    const seqLen = x.rank === 3 ? x.shape[1] as number : x.shape[0];
    if (seqLen > this.rope.maxSeqLen) {
      throw new Error(`apply x: sequence length ${seqLen} exceeds the rope's maxSeqLen ${this.rope.maxSeqLen}`);
    }
    return attendWithoutCache(this.parts, x);
  }

  override computeOutputShape(inputShape: (number|null)[]|(number|null)[][]): (number|null)[]|(number|null)[][] {
    return inputShape;
  }

  // ---- Lifetime and serialization ----------------------------------------------------------

  private assertLive(): void {
    if (this.isDisposedLayer) throw new Error(`LatentAttentionWithRope '${this.name}' has been disposed`);
  }

  private assertWeightsReady(what: string): void {
    this.assertLive();
    if (!this.built) {
      throw new Error(`${what}: the weights of layer '${this.name}' are not loaded: call ` +
                      `loadStateDict(weights) (or apply the layer once to initialize them)`);
    }
  }

  // ---- Lifetime and serialization ----------------------------------------------------------

  /** Frees the weights and derived tensors. The rope (shared, caller-owned) is not disposed. */
  override dispose(): {refCountAfterDispose: number, numDisposedVariables: number} {
    this.clearAbsorbedWeights();
    if (this.isDisposedLayer) return {refCountAfterDispose: 0, numDisposedVariables: 0};
    let result = {refCountAfterDispose: 0, numDisposedVariables: 0};
    if (this.built && this._refCount !== null) {
      result = super.dispose();
    } else if (this.built) {
      result = {refCountAfterDispose: 0, numDisposedVariables: this.disposeWeights()};
      this._refCount = 0;
    }
    if (result.refCountAfterDispose === 0) this.isDisposedLayer = true;
    return result;
  }

  private constructorArgs(): LatentAttentionWithRopeArgs {
    return {
      rope: this.rope, numAttentionHeads: this.numAttentionHeads,
      numKeyValueHeads: this.numKeyValueHeads, hiddenSize: this.hiddenSize,
      kvParams: this.kvParams, devices: this.devices, scale: this.scaleArg,
      qLoraRank: this.qLoraRank, kvLoraRank: this.kvLoraRank, qkNopeHeadDim: this.qkNopeHeadDim,
      qkRopeHeadDim: this.qkRopeHeadDim, vHeadDim: this.vHeadDim, bufferSize: this.bufferSize,
      graphMode: this.graphMode, rmsNormEps: this.rmsNormEps, trainable: this.trainable,
      dtype: this.weightDtype, oProjDtype: this.oProjDtype, normDtype: this.normDtype,
    };
  }

  override getConfig(): tf.serialization.ConfigDict {
    const ropeClass = (this.rope.constructor as typeof RotaryEmbedding).className;
    return {
      ...super.getConfig(),
      rope: {className: ropeClass, config: this.rope.getConfig()},
      numAttentionHeads: this.numAttentionHeads,
      numKeyValueHeads: this.numKeyValueHeads,
      hiddenSize: this.hiddenSize,
      kvParams: {
        dtype: this.kvParams.dtype, nKvHeads: this.kvParams.nKvHeads,
        headDim: this.kvParams.headDim, pageSize: this.kvParams.pageSize,
        numLayers: this.kvParams.numLayers, isMla: this.kvParams.isMla,
      },
      scale: this.scaleArg,
      qLoraRank: this.qLoraRank,
      kvLoraRank: this.kvLoraRank,
      qkNopeHeadDim: this.qkNopeHeadDim,
      qkRopeHeadDim: this.qkRopeHeadDim,
      vHeadDim: this.vHeadDim,
      bufferSize: this.bufferSize,
      graphMode: this.graphMode,
      rmsNormEps: this.rmsNormEps,
      dtype: this.weightDtype,
      oProjDtype: this.oProjDtype,
      normDtype: this.normDtype,
    };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
      cls: tf.serialization.SerializableConstructor<T>, config: tf.serialization.ConfigDict): T {
    const raw = config as unknown as Record<string, unknown> & {
      rope: {className: string, config: {[key: string]: unknown}},
      kvParams: ConstructorParameters<typeof KVCacheParams>[0],
    };
    const args = {
      ...raw,
      rope: ropeFromConfig(raw.rope),
      kvParams: new KVCacheParams(raw.kvParams),
    } as unknown as LatentAttentionWithRopeArgs;
    return new cls(args as unknown as tf.serialization.ConfigDict) as T;
  }
}

tf.serialization.registerClass(LatentAttentionWithRope);
