import * as tf from '@tensorflow/tfjs-core';
import {initializers, layers, LayerVariable} from '@tensorflow/tfjs-layers';
import {KVCacheParams} from '../cache/kv_cache_params.js';
import {KVCollection} from '../cache/paged_kv_cache.js';
import {checkInteger} from '../ops/check.js';
import {fusedRope, mergeAttentionPartials, mlaDecode, mlaPrefill, mlaLinear} from '../ops/mla_ops.js';
import {RotaryEmbedding, ropeFromConfig} from '../rope/rotary_embedding.js';
import {applyRope, rmsNorm} from '../ops/differentiable.js';
import {MLAPrefillMetadata, planPrefillChunks, PrefillChunk, prefillChunks} from './prefill_metadata.js';
import {DeviceRef, ShardingStrategy} from './sharding.js';
import {isSoftwareAdapter, WebGPUBackend} from '../kernels/webgpu/webgpu_util.js';
import '../register.js';

export type GraphMode = 'prefill'|'decode'|'auto';

/** In 'auto' mode, batches whose largest new-token count is at most this take the absorbed path. */
export const MLA_DECODE_MAX_NEW_TOKENS = 8;

export interface LatentAttentionWithRopeArgs {
  rope: RotaryEmbedding;
  numAttentionHeads: number;
  /** Stored for API parity; an MLA cache always has one latent head. */
  numKeyValueHeads: number;
  hiddenSize: number;
  kvParams: KVCacheParams;
  /** Only 'float32' for now. */
  dtype?: 'float32';
  devices?: DeviceRef[];
  /** Only the built-in dense projection ('Linear' or unset) for now. */
  linearCls?: 'Linear'|null;
  /** Only 'float32' for now. */
  oProjDtype?: 'float32'|null;
  /** Quantized o_proj is not supported yet: must be unset. */
  oProjQuantConfig?: null;
  /** Base softmax scale; λ = rope.computeScale(scale ?? (N+R)^−0.5). */
  scale?: number|null;
  qLoraRank?: number|null;
  kvLoraRank?: number;
  qkNopeHeadDim?: number;
  qkRopeHeadDim?: number;
  vHeadDim?: number;
  /** Rows of the temporary decompressed K/V of the prefill path (longer contexts go chunk by chunk). */
  bufferSize?: number;
  graphMode?: GraphMode;
  /** Only 'float32' for now. */
  normDtype?: 'float32'|null;
  /** RMSNorm epsilon of q_a_layernorm and kv_a_layernorm. */
  rmsNormEps?: number;
  name?: string;
  trainable?: boolean;
}

export interface ForwardOptions {
  kvCollection: KVCollection;
  /** [B + 1]: sequence b owns rows [off[b], off[b+1]) of x. */
  inputRowOffsets: tf.Tensor1D|number[];
  layerIdx?: number;
  prefillMetadata?: MLAPrefillMetadata;
}

/** Products with at most this many rows (decode steps) go through MLALinear on any webgpu adapter. */
const DECODE_LINEAR_ROWS = 8;

/** The host-side plan of one step: all JS numbers, checked before any tensor work. */
interface StepPlan {
  numTokens: number;
  offsets: number[];
  /** [T, 3] row-major: (batch row, absolute position, cache slot). */
  tokenInfo: Int32Array;
  useDecodePath: boolean;
}

interface AbsorbedWeights {
  /** The kv_b_proj data these were derived from (a Variable's dataId changes on assign). */
  source: object;
  /** W_UK as [H, N, L]. */
  wUk: tf.Tensor3D;
  /** W_UV as [H, V, L] (the transpose of the documented [H, L, V]: matMul takes transposeB). */
  wUvT: tf.Tensor3D;
  /** W_UK as [H, L, N]: per head the [out, in] operand of MLALinear (made on first use). */
  wUkT: tf.Tensor3D|null;
}

const HF_WEIGHT_NAMES = [
  'q_proj.weight', 'q_a_proj.weight', 'q_a_layernorm.weight', 'q_b_proj.weight',
  'kv_a_proj_with_mqa.weight', 'kv_a_layernorm.weight', 'kv_b_proj.weight', 'o_proj.weight',
] as const;
export type HFWeightName = typeof HF_WEIGHT_NAMES[number];

function showShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Multi-head Latent Attention with RoPE (DeepSeek-V2/V3), MAX's `LatentAttentionWithRope` on
 * tfjs: `forward` runs one step of a ragged batch against a paged latent cache; `apply` on
 * `[batch, seq, hidden]` runs causal attention without a cache (usable in tf.model).
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
  /** The base scale as given (null: (N+R)^−0.5). */
  readonly scaleArg: number|null;
  private readonly weightVars = new Map<HFWeightName, LayerVariable>();
  private absorbed: AbsorbedWeights|null = null;
  private strategy: ShardingStrategy|null = null;
  private isDisposedLayer = false;

  constructor(args: LatentAttentionWithRopeArgs) {
    super({name: args?.name, trainable: args?.trainable, dtype: 'float32'} as ConstructorParameters<typeof layers.Layer>[0]);
    if (args === undefined || args === null) {
      throw new Error('LatentAttentionWithRope: expected an arguments object, got ' + args);
    }
    if (!(args.rope instanceof RotaryEmbedding)) {
      throw new Error('LatentAttentionWithRope rope: expected a RotaryEmbedding or ' +
                      `DeepseekYarnRotaryEmbedding, got ${typeof args.rope}`);
    }
    if (!(args.kvParams instanceof KVCacheParams)) {
      throw new Error(`LatentAttentionWithRope kvParams: expected a KVCacheParams, got ${typeof args.kvParams}`);
    }
    checkInteger('LatentAttentionWithRope numAttentionHeads', args.numAttentionHeads, 1);
    checkInteger('LatentAttentionWithRope numKeyValueHeads', args.numKeyValueHeads, 1);
    checkInteger('LatentAttentionWithRope hiddenSize', args.hiddenSize, 1);
    this.rope = args.rope;
    this.numAttentionHeads = args.numAttentionHeads;
    this.numKeyValueHeads = args.numKeyValueHeads;
    this.hiddenSize = args.hiddenSize;
    this.kvParams = args.kvParams;
    this.devices = [...(args.devices ?? [])];
    this.qLoraRank = args.qLoraRank ?? null;
    if (this.qLoraRank !== null) checkInteger('LatentAttentionWithRope qLoraRank', this.qLoraRank, 1);
    this.kvLoraRank = args.kvLoraRank ?? 512;
    this.qkNopeHeadDim = args.qkNopeHeadDim ?? 128;
    this.qkRopeHeadDim = args.qkRopeHeadDim ?? 64;
    this.vHeadDim = args.vHeadDim ?? 128;
    checkInteger('LatentAttentionWithRope kvLoraRank', this.kvLoraRank, 1);
    checkInteger('LatentAttentionWithRope qkNopeHeadDim', this.qkNopeHeadDim, 1);
    checkInteger('LatentAttentionWithRope qkRopeHeadDim', this.qkRopeHeadDim, 2);
    checkInteger('LatentAttentionWithRope vHeadDim', this.vHeadDim, 1);
    this.bufferSize = args.bufferSize ?? 16384;
    checkInteger('LatentAttentionWithRope bufferSize', this.bufferSize, 1);
    this.graphMode = args.graphMode ?? 'auto';
    if (!['prefill', 'decode', 'auto'].includes(this.graphMode)) {
      throw new Error(`LatentAttentionWithRope graphMode: expected 'prefill', 'decode' or 'auto', ` +
                      `got '${this.graphMode}'`);
    }
    this.rmsNormEps = args.rmsNormEps ?? 1e-6;
    this.scaleArg = args.scale ?? null;
    if (this.scaleArg !== null && !(this.scaleArg > 0)) {
      throw new Error(`LatentAttentionWithRope scale: expected a positive number, got ${this.scaleArg}`);
    }
    for (const [option, value] of [['dtype', args.dtype], ['oProjDtype', args.oProjDtype],
                                   ['normDtype', args.normDtype]] as const) {
      if (value !== undefined && value !== null && value !== 'float32') {
        throw new Error(`LatentAttentionWithRope ${option}: only 'float32' is supported, got '${value}'`);
      }
    }
    if (args.linearCls !== undefined && args.linearCls !== null && args.linearCls !== 'Linear') {
      throw new Error(`LatentAttentionWithRope linearCls: only the built-in 'Linear' is supported, ` +
                      `got ${String(args.linearCls)}`);
    }
    if (args.oProjQuantConfig !== undefined && args.oProjQuantConfig !== null) {
      throw new Error('LatentAttentionWithRope oProjQuantConfig: quantized o_proj is not supported yet');
    }
    const rowWidth = this.kvLoraRank + this.qkRopeHeadDim;
    if (this.kvParams.headDim !== rowWidth) {
      throw new Error(`LatentAttentionWithRope kvParams.headDim: expected kvLoraRank + qkRopeHeadDim ` +
                      `= ${rowWidth}, got ${this.kvParams.headDim}`);
    }
    if (this.rope.dim !== this.qkRopeHeadDim) {
      throw new Error(`LatentAttentionWithRope rope.dim: expected qkRopeHeadDim = ${this.qkRopeHeadDim}, ` +
                      `got ${this.rope.dim}`);
    }
  }

  // ---- Shapes and weights ------------------------------------------------------------------

  /** λ: the softmax scale (the YaRN mscale² included). */
  get scale(): number {
    return this.rope.computeScale(this.scaleArg ?? 1 / Math.sqrt(this.qkNopeHeadDim + this.qkRopeHeadDim));
  }

  /** The HF weights of this configuration and their [out, in] shapes. */
  expectedWeightShapes(): Map<HFWeightName, number[]> {
    const H = this.numAttentionHeads;
    const qHeadDim = this.qkNopeHeadDim + this.qkRopeHeadDim;
    const shapes = new Map<HFWeightName, number[]>();
    if (this.qLoraRank === null) {
      shapes.set('q_proj.weight', [H * qHeadDim, this.hiddenSize]);
    } else {
      shapes.set('q_a_proj.weight', [this.qLoraRank, this.hiddenSize]);
      shapes.set('q_a_layernorm.weight', [this.qLoraRank]);
      shapes.set('q_b_proj.weight', [H * qHeadDim, this.qLoraRank]);
    }
    shapes.set('kv_a_proj_with_mqa.weight', [this.kvLoraRank + this.qkRopeHeadDim, this.hiddenSize]);
    shapes.set('kv_a_layernorm.weight', [this.kvLoraRank]);
    shapes.set('kv_b_proj.weight', [H * (this.qkNopeHeadDim + this.vHeadDim), this.kvLoraRank]);
    shapes.set('o_proj.weight', [this.hiddenSize, H * this.vHeadDim]);
    return shapes;
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
      const initializer = name.endsWith('layernorm.weight') ? initializers.ones() :
                                                             initializers.randomNormal({stddev: 0.02});
      this.weightVars.set(name, this.addWeight(namePrefix + name, shape, 'float32', initializer));
    }
    this.built = true;
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
   */
  loadStateDict(weights: Record<string, tf.Tensor>): void {
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
      if (!(tensor instanceof tf.Tensor) || tensor.isDisposed) {
        throw new Error(`loadStateDict: weight '${name}' is not a live tf.Tensor`);
      }
      if (!tf.util.arraysEqual(tensor.shape, shape)) {
        throw new Error(`loadStateDict: weight '${name}' has shape ${showShape(tensor.shape)}, ` +
                        `expected ${showShape(shape)}`);
      }
    }
    this.build([null, this.hiddenSize]);
    for (const [name] of expected) {
      const value = tf.tidy(() => tf.cast(weights[name], 'float32'));
      this.weightVars.get(name)!.write(value);
      value.dispose();
    }
    this.clearAbsorbedWeights();
  }

  /** Copies of the weights under their HF names (the caller owns and disposes them). */
  stateDict(): Record<string, tf.Tensor> {
    this.assertWeightsReady('stateDict');
    const out: Record<string, tf.Tensor> = {};
    for (const [name, variable] of this.weightVars) out[name] = tf.clone(variable.read());
    return out;
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

  /** [(Q or H·(N+R)) + L + R, hidden]: q_a_proj (or q_proj) rows, then kv_a_proj_with_mqa. A new tensor. */
  get wqkv(): tf.Tensor2D {
    this.assertWeightsReady('wqkv');
    const qWeight = this.weight(this.qLoraRank === null ? 'q_proj.weight' : 'q_a_proj.weight');
    return tf.concat([qWeight, this.weight('kv_a_proj_with_mqa.weight')], 0) as tf.Tensor2D;
  }

  /** kv_b_proj rows [start, start + size) of every head, as [H, size, L]. */
  private kvBHeads(what: string, start: number, size: number): tf.Tensor3D {
    this.assertWeightsReady(what);
    const H = this.numAttentionHeads;
    return tf.tidy(() => {
      const perHead = tf.reshape(this.weight('kv_b_proj.weight'),
                                 [H, this.qkNopeHeadDim + this.vHeadDim, this.kvLoraRank]);
      return tf.slice(perHead, [0, start, 0], [H, size, this.kvLoraRank]) as tf.Tensor3D;
    });
  }

  /** W_UK and W_UV for the absorbed path, kept until kv_b_proj changes. */
  private absorbedWeights(): AbsorbedWeights {
    const source = this.weight('kv_b_proj.weight').dataId;
    if (this.absorbed === null || this.absorbed.source !== source) {
      this.clearAbsorbedWeights();
      this.absorbed = {
        source,
        wUk: tf.keep(this.kvBHeads('wUk', 0, this.qkNopeHeadDim)),
        wUvT: tf.keep(this.kvBHeads('wUv', this.qkNopeHeadDim, this.vHeadDim)),
        wUkT: null,
      };
    }
    return this.absorbed;
  }

  /** W_UK in MLALinear's per-head [out, in] layout, [H, L, N], kept like the others. */
  private absorbedWUkT(): tf.Tensor3D {
    const absorbed = this.absorbedWeights();
    if (absorbed.wUkT === null) absorbed.wUkT = tf.keep(tf.transpose(absorbed.wUk, [0, 2, 1]));
    return absorbed.wUkT;
  }

  private clearAbsorbedWeights(): void {
    if (this.absorbed !== null) {
      this.absorbed.wUk.dispose();
      this.absorbed.wUvT.dispose();
      this.absorbed.wUkT?.dispose();
      this.absorbed = null;
    }
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
        for (const [name, variable] of this.weightVars) {
          out[name] = tensorParallel ? this.headBlock(name, variable.read(), i * headsPerShard,
                                                      headsPerShard) :
                                       tf.clone(variable.read());
        }
        return out;
      });
      shard.loadStateDict(weights);
      Object.values(weights).forEach((w) => w.dispose());
      return shard;
    });
  }

  /** The part of weight `name` that belongs to heads [firstHead, firstHead + numHeads). */
  private headBlock(name: HFWeightName, weight: tf.Tensor, firstHead: number, numHeads: number): tf.Tensor {
    const rowsPerHead: Partial<Record<HFWeightName, number>> = {
      'q_proj.weight': this.qkNopeHeadDim + this.qkRopeHeadDim,
      'q_b_proj.weight': this.qkNopeHeadDim + this.qkRopeHeadDim,
      'kv_b_proj.weight': this.qkNopeHeadDim + this.vHeadDim,
    };
    const rows = rowsPerHead[name];
    if (rows !== undefined) {
      return tf.slice(weight, [firstHead * rows, 0], [numHeads * rows, weight.shape[1]!]);
    }
    if (name === 'o_proj.weight') {
      return tf.slice(weight, [0, firstHead * this.vHeadDim],
                      [weight.shape[0], numHeads * this.vHeadDim]);
    }
    return tf.clone(weight);  // replicated: q_a_proj, norms, kv_a_proj_with_mqa
  }

  // ---- Running -----------------------------------------------------------------------------

  /** MAX's prefill plan for this step (see MLAPrefillMetadata). */
  createMlaPrefillMetadata(inputRowOffsets: tf.Tensor1D|number[], kvCollection: KVCollection):
      MLAPrefillMetadata {
    this.checkCollection(kvCollection);
    this.readOffsets(inputRowOffsets, kvCollection, null);
    const contexts = kvCollection.cacheLengths.map((c, b) => c + kvCollection.numNewTokens[b]);
    return planPrefillChunks(contexts, kvCollection.pageSize, this.bufferSize);
  }

  /**
   * One step over a ragged batch: x [T, hidden] holds the new tokens of every sequence of
   * `kvCollection` (from `cache.fetch`); their latent rows are written into the cache, and the
   * result is [T, hidden]. Call `cache.step` afterwards to commit the tokens.
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
    if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[1] !== this.hiddenSize) {
      const got = x instanceof tf.Tensor ? showShape(x.shape) : typeof x;
      throw new Error(`forward x: expected shape [T, ${this.hiddenSize}], got ${got}`);
    }
    if (options === undefined || options === null) {
      throw new Error('forward options: expected {kvCollection, inputRowOffsets}, got ' + options);
    }
    const layerIdx = options.layerIdx ?? 0;
    const collection = options.kvCollection;
    this.checkCollection(collection);
    checkInteger('forward layerIdx', layerIdx, 0, collection.params.numLayers - 1);
    const plan = this.planStep(x.shape[0], options.inputRowOffsets, collection);
    if (plan.numTokens === 0) return tf.zeros([0, this.hiddenSize]);
    const metadata = plan.useDecodePath ? null :
        options.prefillMetadata ?? this.createMlaPrefillMetadata(plan.offsets, collection);
    if (metadata !== null) this.checkPrefillMetadata(metadata, collection);

    return tf.tidy(() => {
      const cache = collection.storage(layerIdx);
      const tokenInfo = tf.tensor2d(plan.tokenInfo, [plan.numTokens, 3], 'int32');
      const lookup = tf.tensor2d(collection.lookupValues(),
                                 [collection.batchSize, collection.maxPagesPerSeq], 'int32');
      const q = this.projectQueries(x, true);
      const kv = this.linear(tf.cast(x, 'float32') as tf.Tensor2D, 'kv_a_proj_with_mqa.weight');
      const qRoped = fusedRope(q, kv as tf.Tensor2D, this.weight('kv_a_layernorm.weight') as tf.Tensor1D,
                               this.rope.freqsCis, tokenInfo, cache,
                               {eps: this.rmsNormEps, interleaved: this.rope.interleaved});
      const attention = metadata === null ?
          this.absorbedAttention(qRoped, cache, lookup, tokenInfo, collection.maxContextLength) :
          this.decompressedAttention(qRoped, cache, lookup, tokenInfo, prefillChunks(
              metadata, collection.cacheLengths.map((c, b) => c + collection.numNewTokens[b]),
              (b, k) => collection.slotOf(b, k)), true);
      return this.linear(attention as tf.Tensor2D, 'o_proj.weight');
    });
  }

  /**
   * x · Wᵀ for the weight `name` ([out, in]): MLALinear where `useLinearKernel` says so, else
   * tf.matMul. Not differentiable through MLALinear: attendWithoutCache does not use it.
   */
  private linear(x: tf.Tensor2D, name: HFWeightName): tf.Tensor2D {
    const w = this.weight(name) as tf.Tensor2D;
    if (this.useLinearKernel(x.shape[0])) return mlaLinear(x, w);
    return tf.matMul(x, w, false, true);
  }

  /**
   * Whether products with `rows` rows go through MLALinear: on webgpu for decode steps (few
   * rows: it streams W once where tfjs's tiled matMul is 2-14× slower, SwiftShader) and on
   * software adapters for every row count (≈ 2 GFLOP/s there against tfjs's 0.05-0.2). On a
   * GPU, tfjs's workgroup-tiled matMul keeps larger products.
   */
  private useLinearKernel(rows: number): boolean {
    if (tf.getBackend() !== 'webgpu') return false;
    return rows <= DECODE_LINEAR_ROWS || isSoftwareAdapter(tf.backend() as unknown as WebGPUBackend);
  }

  /**
   * q = x·q_projᵀ, or RMSNorm(x·q_a_projᵀ)·q_b_projᵀ with q-LoRA; as [T, H, N + R].
   * `viaLinear` (runStep only): the products go through `linear` (MLALinear where
   * `useLinearKernel` says so, no gradient); otherwise tf.matMul, so attendWithoutCache stays
   * differentiable.
   */
  private projectQueries(x: tf.Tensor2D, viaLinear = false): tf.Tensor3D {
    const input = tf.cast(x, 'float32');
    const project = (t: tf.Tensor2D, name: HFWeightName): tf.Tensor2D =>
        viaLinear ? this.linear(t, name) : tf.matMul(t, this.weight(name), false, true);
    let q: tf.Tensor;
    if (this.qLoraRank === null) {
      q = project(input, 'q_proj.weight');
    } else {
      const qA = project(input, 'q_a_proj.weight');
      const normed = rmsNorm(qA, this.weight('q_a_layernorm.weight'), this.rmsNormEps);
      q = project(normed as tf.Tensor2D, 'q_b_proj.weight');
    }
    return tf.reshape(q, [x.shape[0], this.numAttentionHeads, this.qkNopeHeadDim + this.qkRopeHeadDim]);
  }

  /** The decode path: q_lat = W_UKᵀ·q_nope, MLADecode over the cache, out = W_UV·o_lat. */
  private absorbedAttention(qRoped: tf.Tensor3D, cache: tf.Tensor3D, lookup: tf.Tensor2D,
                            tokenInfo: tf.Tensor2D, maxContextLength: number): tf.Tensor2D {
    const numTokens = qRoped.shape[0];
    const [qNope, qRope] = tf.split(qRoped, [this.qkNopeHeadDim, this.qkRopeHeadDim], 2);
    // On webgpu with few tokens, tfjs's batched matMul is far slower than reading the weights
    // (≈ 250 ms a decode step at V2-Lite sizes on SwiftShader): MLALinear per head instead, all
    // heads in one dispatch.
    const viaLinear = this.useLinearKernel(numTokens);
    const headsFirst = this.swapTokensAndHeads(qNope as tf.Tensor3D);  // [H, T, N]
    const qLatent = this.swapTokensAndHeads(viaLinear ?  // [T, H, L]
        mlaLinear(headsFirst, this.absorbedWUkT()) : tf.matMul(headsFirst, this.absorbedWeights().wUk));
    const qAbsorbed = tf.concat([qLatent, qRope], 2) as tf.Tensor3D;
    const outLatent = mlaDecode(qAbsorbed, cache, lookup, tokenInfo,
                                {scale: this.scale, kvLoraRank: this.kvLoraRank, maxContextLength});
    const outHeadsFirst = this.swapTokensAndHeads(outLatent);  // [H, T, L]
    const wUvT = this.absorbedWeights().wUvT;
    const out = this.swapTokensAndHeads(viaLinear ?  // [T, H, V]
        mlaLinear(outHeadsFirst, wUvT) : tf.matMul(outHeadsFirst, wUvT, false, true));
    return tf.reshape(out, [numTokens, this.numAttentionHeads * this.vHeadDim]);
  }

  /** [A, B, C] → [B, A, C]; a reshape (no data movement) when A or B is 1. */
  private swapTokensAndHeads(t: tf.Tensor3D): tf.Tensor3D {
    const [a, b, c] = t.shape;
    return a === 1 || b === 1 ? tf.reshape(t, [b, a, c]) : tf.transpose(t, [1, 0, 2]);
  }

  /**
   * The prefill path: per chunk of at most bufferSize context rows, gather the latent rows,
   * decompress them with kv_b_proj into K_nope | V, run MLAPrefill, and merge the chunks'
   * partial softmax results by log-sum-exp. Differentiable (MLAPrefill has a gradient), so
   * the no-cache path uses it too, with a dense `cache`; `viaLinear` (runStep only, no
   * gradient) decompresses through `linear`.
   */
  private decompressedAttention(qRoped: tf.Tensor3D, cache: tf.Tensor3D, lookup: tf.Tensor2D,
                                tokenInfo: tf.Tensor2D, chunks: PrefillChunk[],
                                viaLinear = false): tf.Tensor2D {
    const [numTokens, numHeads] = qRoped.shape;
    const rowWidth = this.kvLoraRank + this.qkRopeHeadDim;
    const cacheRows = tf.reshape(cache, [-1, rowWidth]);
    let merged: tf.Tensor3D|null = null;
    for (const chunk of chunks) {
      // Each chunk is freed before the next, so memory stays bounded by bufferSize rows.
      const part = tf.tidy(() => {
        const slots = tf.tensor1d(chunk.slots, 'int32');
        const latent = tf.slice(tf.gather(cacheRows, slots), [0, 0], [chunk.slots.length, this.kvLoraRank]);
        const kvBuffer = tf.reshape(
            viaLinear ? this.linear(latent as tf.Tensor2D, 'kv_b_proj.weight') :
                        tf.matMul(latent, this.weight('kv_b_proj.weight'), false, true),
            [chunk.slots.length, numHeads, this.qkNopeHeadDim + this.vHeadDim]) as tf.Tensor3D;
        const chunkInfo = tf.tensor2d(chunk.chunkInfo, [lookup.shape[0], 3], 'int32');
        return mlaPrefill(qRoped, kvBuffer, cache, lookup, tokenInfo, chunkInfo,
                          {scale: this.scale, qkNopeHeadDim: this.qkNopeHeadDim});
      });
      if (merged === null) {
        merged = part;
      } else {
        const next: tf.Tensor3D = mergeAttentionPartials(merged, part);
        merged.dispose();
        part.dispose();
        merged = next;
      }
    }
    if (merged === null) throw new Error('forward: the prefill plan holds no context row');
    const out = tf.slice(merged, [0, 0, 0], [numTokens, numHeads, this.vHeadDim]);
    return tf.reshape(out, [numTokens, numHeads * this.vHeadDim]);
  }

  /** tfjs entry: with `kwargs.kvCollection` a cached step (as forward); else causal attention. */
  override call(inputs: tf.Tensor|tf.Tensor[], kwargs: {[key: string]: unknown}): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (kwargs !== undefined && kwargs.kvCollection !== undefined) {
      return this.forward(x as tf.Tensor2D, kwargs as unknown as ForwardOptions);
    }
    return this.attendWithoutCache(x);
  }

  /**
   * Causal attention over x [batch, seq, hidden] (or [seq, hidden]) with no cache. Built from
   * differentiable pieces (tfjs ops and MLAPrefill, which has a gradient), so tf.grads and
   * model.fit work through it: the latent rows [RMSNorm(c_kv) | rope(k_pe)] of each sequence
   * form a dense cache [batch, seq, L + R], one page per sequence.
   */
  private attendWithoutCache(x: tf.Tensor): tf.Tensor {
    this.assertWeightsReady('apply');
    if ((x.rank !== 3 && x.rank !== 2) || x.shape[x.rank - 1] !== this.hiddenSize) {
      throw new Error(`apply x: expected shape [batch, seq, ${this.hiddenSize}] (or [seq, ` +
                      `${this.hiddenSize}]), got ${showShape(x.shape)}`);
    }
    const [batch, seqLen]: number[] = x.rank === 3 ? [x.shape[0], x.shape[1] as number] : [1, x.shape[0]];
    if (batch * seqLen === 0) return tf.zeros(x.shape);
    if (seqLen > this.rope.maxSeqLen) {
      throw new Error(`apply x: sequence length ${seqLen} exceeds the rope's maxSeqLen ${this.rope.maxSeqLen}`);
    }
    const numTokens = batch * seqLen;
    const slotOf = (b: number, k: number) => b * seqLen + k;
    const tokenInfo = new Int32Array(numTokens * 3);
    for (let b = 0; b < batch; b++) {
      for (let k = 0; k < seqLen; k++) tokenInfo.set([b, k, slotOf(b, k)], slotOf(b, k) * 3);
    }
    const contexts = new Array<number>(batch).fill(seqLen);
    const chunks = prefillChunks(planPrefillChunks(contexts, seqLen, this.bufferSize), contexts, slotOf);
    return tf.tidy(() => {
      const flat = tf.reshape(tf.cast(x, 'float32'), [numTokens, this.hiddenSize]) as tf.Tensor2D;
      const positions = tf.tensor1d(Array.from({length: numTokens}, (_, t) => t % seqLen), 'int32');
      const q = this.projectQueries(flat);
      const [qNope, qRope] = tf.split(q, [this.qkNopeHeadDim, this.qkRopeHeadDim], 2);
      const qRoped = tf.concat(
          [qNope, applyRope(qRope, this.rope.freqsCis, positions, this.rope.interleaved)], 2) as tf.Tensor3D;
      const kv = tf.matMul(flat, this.weight('kv_a_proj_with_mqa.weight'), false, true);
      const [latent, kPe] = tf.split(kv, [this.kvLoraRank, this.qkRopeHeadDim], 1);
      const rows = tf.concat([
        rmsNorm(latent, this.weight('kv_a_layernorm.weight'), this.rmsNormEps),
        applyRope(kPe, this.rope.freqsCis, positions, this.rope.interleaved),
      ], 1);
      const denseCache = tf.reshape(rows, [batch, seqLen, this.kvLoraRank + this.qkRopeHeadDim]) as tf.Tensor3D;
      const lookup = tf.tensor2d(Array.from({length: batch}, (_, b) => b), [batch, 1], 'int32');
      const attention = this.decompressedAttention(
          qRoped, denseCache, lookup, tf.tensor2d(tokenInfo, [numTokens, 3], 'int32'), chunks);
      const y = tf.matMul(attention, this.weight('o_proj.weight'), false, true);
      return tf.reshape(y, x.shape);
    });
  }

  override computeOutputShape(inputShape: (number|null)[]|(number|null)[][]): (number|null)[]|(number|null)[][] {
    return inputShape;
  }

  // ---- Validation --------------------------------------------------------------------------

  private checkCollection(collection: KVCollection): void {
    if (!(collection instanceof KVCollection)) {
      throw new Error(`kvCollection: expected the KVCollection returned by cache.fetch, got ${typeof collection}`);
    }
    if (collection.cache.isDisposed) throw new Error('kvCollection: its cache has been disposed');
    const rowWidth = this.kvLoraRank + this.qkRopeHeadDim;
    if (collection.params.rowWidth !== rowWidth) {
      throw new Error(`kvCollection: expected cache rows of kvLoraRank + qkRopeHeadDim = ${rowWidth}, ` +
                      `got headDim ${collection.params.rowWidth}`);
    }
    collection.seqIds.forEach((seqId, b) => {
      if (!collection.cache.contains(seqId)) {
        throw new Error(`kvCollection seqIds[${b}]: sequence ${seqId} is not claimed (released?)`);
      }
      const committed = collection.cache.cacheLength(seqId);
      if (committed !== collection.cacheLengths[b]) {
        throw new Error(`kvCollection: stale for sequence ${seqId}: fetched at length ` +
                        `${collection.cacheLengths[b]}, the cache now has ${committed} tokens ` +
                        `(fetch again after each step)`);
      }
      const pages = collection.cache.pagesOf(seqId);
      if (!collection.lookupTable[b].every((page, i) => pages[i] === page)) {
        throw new Error(`kvCollection: stale for sequence ${seqId}: its pages changed since the ` +
                        `fetch (rolled back after a failed step?); fetch again`);
      }
    });
  }

  /** Offsets as JS numbers, checked against the collection's new-token counts. */
  private readOffsets(inputRowOffsets: tf.Tensor1D|number[], collection: KVCollection,
                      numTokens: number|null): number[] {
    const expectedLength = collection.batchSize + 1;
    let offsets: number[];
    if (inputRowOffsets instanceof tf.Tensor) {
      if (inputRowOffsets.rank !== 1 || inputRowOffsets.shape[0] !== expectedLength) {
        throw new Error(`inputRowOffsets: expected shape [${expectedLength}] (batch + 1), got ` +
                        `${showShape(inputRowOffsets.shape)}`);
      }
      // Only a backend with synchronous reads is asked for the values (never a GPU read-back);
      // elsewhere the collection's counts, which the step already carries, are the offsets.
      offsets = tf.getBackend() === 'cpu' ?
          Array.from(inputRowOffsets.dataSync()) :
          [0, ...collection.numNewTokens.map((_, b, counts) =>
                   counts.slice(0, b + 1).reduce((a, c) => a + c, 0))];
    } else if (Array.isArray(inputRowOffsets)) {
      offsets = [...inputRowOffsets];
    } else {
      throw new Error(`inputRowOffsets: expected a number[] or an int32 Tensor1D, got ${typeof inputRowOffsets}`);
    }
    if (offsets.length !== expectedLength) {
      throw new Error(`inputRowOffsets: expected ${expectedLength} entries (batch of ` +
                      `${collection.batchSize} + 1), got ${offsets.length}`);
    }
    if (offsets[0] !== 0) throw new Error(`inputRowOffsets[0]: expected 0, got ${offsets[0]}`);
    for (let b = 0; b < collection.batchSize; b++) {
      const count = offsets[b + 1] - offsets[b];
      if (!Number.isInteger(offsets[b + 1]) || count < 0) {
        throw new Error(`inputRowOffsets[${b + 1}]: expected an integer ≥ inputRowOffsets[${b}] = ` +
                        `${offsets[b]}, got ${offsets[b + 1]}`);
      }
      if (count !== collection.numNewTokens[b]) {
        throw new Error(`inputRowOffsets: sequence ${collection.seqIds[b]} (batch row ${b}) has ` +
                        `${count} rows, but kvCollection was fetched with numNewTokens ` +
                        `${collection.numNewTokens[b]}`);
      }
    }
    if (numTokens !== null && offsets[collection.batchSize] !== numTokens) {
      throw new Error(`inputRowOffsets[${collection.batchSize}]: expected T = ${numTokens} (rows of x), ` +
                      `got ${offsets[collection.batchSize]}`);
    }
    return offsets;
  }

  private planStep(numTokens: number, inputRowOffsets: tf.Tensor1D|number[],
                   collection: KVCollection): StepPlan {
    const offsets = this.readOffsets(inputRowOffsets, collection, numTokens);
    const tokenInfo = new Int32Array(numTokens * 3);
    let maxNewTokens = 0;
    collection.seqIds.forEach((seqId, b) => {
      const count = collection.numNewTokens[b];
      maxNewTokens = Math.max(maxNewTokens, count);
      const cached = collection.cacheLengths[b];
      if (cached + count > this.rope.maxSeqLen) {
        throw new Error(`forward: sequence ${seqId} would reach position ${cached + count - 1}, past ` +
                        `the rope's maxSeqLen ${this.rope.maxSeqLen}`);
      }
      if (Math.ceil((cached + count) / collection.pageSize) > collection.lookupTable[b].length) {
        throw new Error(`kvCollection: sequence ${seqId} has no pages reserved for its ${count} new ` +
                        `tokens (fetch them with cache.fetch)`);
      }
      for (let i = 0; i < count; i++) {
        const t = offsets[b] + i;
        const position = cached + i;
        tokenInfo.set([b, position, collection.slotOf(b, position)], t * 3);
      }
    });
    const useDecodePath = this.graphMode === 'decode' ||
        (this.graphMode === 'auto' && maxNewTokens <= MLA_DECODE_MAX_NEW_TOKENS);
    return {numTokens, offsets, tokenInfo, useDecodePath};
  }

  private checkPrefillMetadata(metadata: MLAPrefillMetadata, collection: KVCollection): void {
    const width = collection.batchSize + 1;
    const rows = metadata?.bufferLengths?.length;
    const ok = Array.isArray(metadata?.bufferRowOffsets) && Array.isArray(metadata?.cacheOffsets) &&
        metadata.bufferRowOffsets.length === rows && metadata.cacheOffsets.length === rows &&
        metadata.bufferRowOffsets.every((r) => r.length === width) &&
        metadata.cacheOffsets.every((r) => r.length === width);
    if (!ok) {
      throw new Error(`prefillMetadata: expected bufferRowOffsets and cacheOffsets of [chunks, ${width}] ` +
                      `and bufferLengths of [chunks] (from createMlaPrefillMetadata for this step)`);
    }
    if (metadata.bufferLengths.some((length) => length > this.bufferSize)) {
      throw new Error(`prefillMetadata bufferLengths: expected ≤ bufferSize ${this.bufferSize}, got ` +
                      `[${metadata.bufferLengths.join(', ')}]`);
    }
  }

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
