/**
 * The layer's arguments: MAX's documented options, their defaults and their validation.
 * Everything here is host-side and runs once, when the layer is made.
 */
import {KVCacheParams} from '../cache/kv_cache_params.js';
import {checkInteger} from '../ops/check.js';
import {RotaryEmbedding} from '../rope/rotary_embedding.js';
import {chooseMLAPrefillTiling} from '../kernels/webgpu/mla_prefill_webgpu.js';
import {DeviceRef} from './sharding.js';
import type {WeightDtype} from '../kernels/kernel_names.js';

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
  /**
   * How the projection weights (and the derived W_UK / W_UV) are stored: 'float32' (default),
   * or 'bfloat16' / 'float16', rounded to nearest-even and packed two per int32 word (half the
   * bytes; arithmetic stays float32). 16-bit layers are inference-only.
   */
  dtype?: WeightDtype;
  devices?: DeviceRef[];
  /** Only the built-in dense projection ('Linear' or unset) for now. */
  linearCls?: 'Linear'|null;
  /** o_proj's storage dtype (default: dtype). */
  oProjDtype?: WeightDtype|null;
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
  /**
   * The norm weights' dtype (default: dtype): their values are rounded to it; they stay float32
   * tensors (a few KB: q_a_layernorm and kv_a_layernorm).
   */
  normDtype?: WeightDtype|null;
  /** RMSNorm epsilon of q_a_layernorm and kv_a_layernorm. */
  rmsNormEps?: number;
  name?: string;
  trainable?: boolean;
}

/** The sizes of spec/MLA.md, as the compute functions read them. */
export interface MLADims {
  /** H. */
  numHeads: number;
  hiddenSize: number;
  /** Q (null: q_proj without LoRA). */
  qLoraRank: number|null;
  /** L. */
  kvLoraRank: number;
  /** N. */
  qkNopeHeadDim: number;
  /** R. */
  qkRopeHeadDim: number;
  /** V. */
  vHeadDim: number;
}

/** The validated arguments with their defaults filled in. */
export interface ResolvedArgs extends MLADims {
  dtype: WeightDtype;
  oProjDtype: WeightDtype;
  normDtype: WeightDtype;
  rope: RotaryEmbedding;
  numKeyValueHeads: number;
  kvParams: KVCacheParams;
  devices: DeviceRef[];
  scaleArg: number|null;
  bufferSize: number;
  graphMode: GraphMode;
  rmsNormEps: number;
}

/** Checks `args` (each Error names the argument, what was expected and what came). */
export function resolveArgs(args: LatentAttentionWithRopeArgs): ResolvedArgs {
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
  const qLoraRank = args.qLoraRank ?? null;
  if (qLoraRank !== null) checkInteger('LatentAttentionWithRope qLoraRank', qLoraRank, 1);
  for (const [option, value] of [['dtype', args.dtype], ['oProjDtype', args.oProjDtype],
                                 ['normDtype', args.normDtype]] as const) {
    if (value !== undefined && value !== null && value !== 'float32' && value !== 'bfloat16' &&
        value !== 'float16') {
      throw new Error(`LatentAttentionWithRope ${option}: expected 'float32', 'bfloat16' or 'float16', ` +
                      `got '${String(value)}'`);
    }
  }
  const dtype = args.dtype ?? 'float32';
  const resolved: ResolvedArgs = {
    dtype,
    oProjDtype: args.oProjDtype ?? dtype,
    normDtype: args.normDtype ?? dtype,
    rope: args.rope,
    numHeads: args.numAttentionHeads,
    numKeyValueHeads: args.numKeyValueHeads,
    hiddenSize: args.hiddenSize,
    kvParams: args.kvParams,
    devices: [...(args.devices ?? [])],
    qLoraRank,
    kvLoraRank: args.kvLoraRank ?? 512,
    qkNopeHeadDim: args.qkNopeHeadDim ?? 128,
    qkRopeHeadDim: args.qkRopeHeadDim ?? 64,
    vHeadDim: args.vHeadDim ?? 128,
    bufferSize: args.bufferSize ?? 16384,
    graphMode: args.graphMode ?? 'auto',
    rmsNormEps: args.rmsNormEps ?? 1e-6,
    scaleArg: args.scale ?? null,
  };
  checkInteger('LatentAttentionWithRope kvLoraRank', resolved.kvLoraRank, 1);
  checkInteger('LatentAttentionWithRope qkNopeHeadDim', resolved.qkNopeHeadDim, 1);
  checkInteger('LatentAttentionWithRope qkRopeHeadDim', resolved.qkRopeHeadDim, 2);
  checkInteger('LatentAttentionWithRope vHeadDim', resolved.vHeadDim, 1);
  checkInteger('LatentAttentionWithRope bufferSize', resolved.bufferSize, 1);
  if (!['prefill', 'decode', 'auto'].includes(resolved.graphMode)) {
    throw new Error(`LatentAttentionWithRope graphMode: expected 'prefill', 'decode' or 'auto', ` +
                    `got '${resolved.graphMode}'`);
  }
  if (resolved.scaleArg !== null && !(resolved.scaleArg > 0)) {
    throw new Error(`LatentAttentionWithRope scale: expected a positive number, got ${resolved.scaleArg}`);
  }
  // 16-bit weights pack two values a word along their input axis (and W_UK^T along N).
  const packedInputs: Array<[string, number, WeightDtype]> = [
    ['hiddenSize', resolved.hiddenSize, resolved.dtype],
    ['qLoraRank', resolved.qLoraRank ?? 0, resolved.dtype],
    ['kvLoraRank', resolved.kvLoraRank, resolved.dtype],
    ['qkNopeHeadDim', resolved.qkNopeHeadDim, resolved.dtype],
    ['numAttentionHeads · vHeadDim', resolved.numHeads * resolved.vHeadDim, resolved.oProjDtype],
  ];
  for (const [what, size, dtype] of packedInputs) {
    if (dtype !== 'float32' && size % 2 !== 0) {
      throw new Error(`LatentAttentionWithRope ${what}: expected an even size with ${dtype} weights ` +
                      `(two values a 32-bit word), got ${size}`);
    }
  }
  if (args.linearCls !== undefined && args.linearCls !== null && args.linearCls !== 'Linear') {
    throw new Error(`LatentAttentionWithRope linearCls: only the built-in 'Linear' is supported, ` +
                    `got ${String(args.linearCls)}`);
  }
  if (args.oProjQuantConfig !== undefined && args.oProjQuantConfig !== null) {
    throw new Error('LatentAttentionWithRope oProjQuantConfig: quantized o_proj is not supported yet');
  }
  const rowWidth = resolved.kvLoraRank + resolved.qkRopeHeadDim;
  if (resolved.kvParams.headDim !== rowWidth) {
    throw new Error(`LatentAttentionWithRope kvParams.headDim: expected kvLoraRank + qkRopeHeadDim ` +
                    `= ${rowWidth}, got ${resolved.kvParams.headDim}`);
  }
  if (resolved.kvParams.dtype === 'float8_e4m3fn' && resolved.kvParams.qkRopeHeadDim !== resolved.qkRopeHeadDim) {
    throw new Error(`LatentAttentionWithRope kvParams.qkRopeHeadDim: the float8_e4m3fn cache splits rows at ` +
                    `qkRopeHeadDim = ${resolved.qkRopeHeadDim}, got ${resolved.kvParams.qkRopeHeadDim}`);
  }
  if (resolved.rope.dim !== resolved.qkRopeHeadDim) {
    throw new Error(`LatentAttentionWithRope rope.dim: expected qkRopeHeadDim = ${resolved.qkRopeHeadDim}, ` +
                    `got ${resolved.rope.dim}`);
  }
  // The prefill kernel stages key rows in the 16 KiB of workgroup memory every WebGPU device
  // has: refused here, on every backend, rather than at the first prefill on webgpu.
  try {
    chooseMLAPrefillTiling({numHeads: resolved.numHeads, nopeDim: resolved.qkNopeHeadDim,
                            ropeDim: resolved.qkRopeHeadDim, vDim: resolved.vHeadDim,
                            kvLoraRank: resolved.kvLoraRank}, 16384, 256, false);
  } catch (error) {
    throw new Error(`LatentAttentionWithRope qkNopeHeadDim + qkRopeHeadDim + vHeadDim: expected a key ` +
                    `row that fits in 16 KiB of workgroup memory, got ${resolved.qkNopeHeadDim} + ` +
                    `${resolved.qkRopeHeadDim} + ${resolved.vHeadDim} (${(error as Error).message})`);
  }
  return resolved;
}
