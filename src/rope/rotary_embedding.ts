import * as tf from '@tensorflow/tfjs-core';
import {checkInteger} from '../ops/check.js';

export interface RotaryEmbeddingArgs {
  /** Width of the roped part of a head (qkRopeHeadDim), even. */
  dim: number;
  nHeads: number;
  /** RoPE base θ. */
  theta: number;
  /** Rows of the frequency table: positions 0 .. maxSeqLen − 1. */
  maxSeqLen: number;
  /** Pairs (2i, 2i+1) when true (DeepSeek, the default); NeoX halves (i, i + dim/2) when false. */
  interleaved?: boolean;
}

export interface YarnScalingParams {
  scalingFactor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
  mscaleAllDim: number;
}

export interface DeepseekYarnRotaryEmbeddingArgs extends RotaryEmbeddingArgs {
  scalingParams: YarnScalingParams;
}

/** g(s, k) of spec/MLA.md: the YaRN magnitude correction. */
export function yarnGetMscale(scalingFactor: number, mscale: number): number {
  return scalingFactor <= 1 ? 1 : 0.1 * mscale * Math.log(scalingFactor) + 1;
}

/** Plain RoPE: inv_freq_i = θ^(−2i/dim), no magnitude factor. */
export class RotaryEmbedding {
  static readonly className: string = 'RotaryEmbedding';
  readonly dim: number;
  readonly nHeads: number;
  readonly theta: number;
  readonly maxSeqLen: number;
  readonly interleaved: boolean;
  private table: tf.Tensor2D|null = null;

  constructor(args: RotaryEmbeddingArgs) {
    checkInteger('RotaryEmbedding dim', args.dim, 2);
    if (args.dim % 2 !== 0) throw new Error(`RotaryEmbedding dim: expected an even number, got ${args.dim}`);
    checkInteger('RotaryEmbedding nHeads', args.nHeads, 1);
    checkInteger('RotaryEmbedding maxSeqLen', args.maxSeqLen, 1);
    if (!(args.theta > 1)) throw new Error(`RotaryEmbedding theta: expected a number > 1, got ${args.theta}`);
    this.dim = args.dim;
    this.nHeads = args.nHeads;
    this.theta = args.theta;
    this.maxSeqLen = args.maxSeqLen;
    this.interleaved = args.interleaved ?? true;
  }

  /** inv_freq_i for the dim/2 rotation pairs. */
  inverseFrequencies(): Float64Array {
    const half = this.dim / 2;
    const invFreq = new Float64Array(half);
    for (let i = 0; i < half; i++) invFreq[i] = Math.pow(this.theta, -2 * i / this.dim);
    return invFreq;
  }

  /** The factor m that multiplies cos and sin (1 for plain RoPE). */
  magnitude(): number {
    return 1;
  }

  /** The table as numbers: [maxSeqLen, dim], row p = [c0, s0, c1, s1, …] at position p. */
  freqsCisValues(): Float32Array {
    const invFreq = this.inverseFrequencies();
    const m = this.magnitude();
    const values = new Float32Array(this.maxSeqLen * this.dim);
    for (let p = 0; p < this.maxSeqLen; p++) {
      for (let i = 0; i < invFreq.length; i++) {
        const angle = p * invFreq[i];
        values[p * this.dim + 2 * i] = Math.cos(angle) * m;
        values[p * this.dim + 2 * i + 1] = Math.sin(angle) * m;
      }
    }
    return values;
  }

  /**
   * [maxSeqLen, dim], rows [cos0, sin0, cos1, sin1, …]. Made on first use on the active backend
   * and owned by this object (do not dispose it; call `dispose()` on the rope).
   */
  get freqsCis(): tf.Tensor2D {
    if (this.table === null || this.table.isDisposed) {
      this.table = tf.keep(tf.tensor2d(this.freqsCisValues(), [this.maxSeqLen, this.dim]));
    }
    return this.table;
  }

  /** λ of spec/MLA.md for this rope: baseScale for plain RoPE. */
  computeScale(baseScale: number): number {
    return baseScale;
  }

  getConfig(): {[key: string]: number|boolean|string|{[key: string]: number}} {
    return {dim: this.dim, nHeads: this.nHeads, theta: this.theta, maxSeqLen: this.maxSeqLen,
            interleaved: this.interleaved};
  }

  /** Frees the table tensor. */
  dispose(): void {
    if (this.table !== null && !this.table.isDisposed) this.table.dispose();
    this.table = null;
  }
}

/** DeepSeek's YaRN RoPE (spec/MLA.md, "DeepSeek YaRN"), as MAX's DeepseekYarnRotaryEmbedding. */
export class DeepseekYarnRotaryEmbedding extends RotaryEmbedding {
  static override readonly className: string = 'DeepseekYarnRotaryEmbedding';
  readonly scalingParams: YarnScalingParams;

  constructor(args: DeepseekYarnRotaryEmbeddingArgs) {
    super(args);
    const p = args.scalingParams;
    if (p === undefined) throw new Error('DeepseekYarnRotaryEmbedding scalingParams: expected an object, got undefined');
    for (const key of ['scalingFactor', 'originalMaxPositionEmbeddings', 'betaFast', 'betaSlow',
                       'mscale', 'mscaleAllDim'] as const) {
      if (typeof p[key] !== 'number' || !Number.isFinite(p[key])) {
        throw new Error(`DeepseekYarnRotaryEmbedding scalingParams.${key}: expected a finite number, got ${p[key]}`);
      }
    }
    if (!(p.scalingFactor > 0)) throw new Error(`DeepseekYarnRotaryEmbedding scalingParams.scalingFactor: expected > 0, got ${p.scalingFactor}`);
    this.scalingParams = {...p};
  }

  /** The correction dim of spec/MLA.md: corr(n) = R·ln(orig/(n·2π)) / (2·ln(trunc(θ))). */
  private correctionDim(numRotations: number): number {
    const orig = this.scalingParams.originalMaxPositionEmbeddings;
    return this.dim * Math.log(orig / (numRotations * 2 * Math.PI)) /
        (2 * Math.log(Math.trunc(this.theta)));
  }

  override inverseFrequencies(): Float64Array {
    const {scalingFactor, betaFast, betaSlow} = this.scalingParams;
    const low = Math.max(Math.floor(this.correctionDim(betaFast)), 0);
    let high = Math.min(Math.trunc(this.correctionDim(betaSlow)) + 1, this.dim - 1);
    if (high === low) high += 0.001;
    const half = this.dim / 2;
    const invFreq = new Float64Array(half);
    for (let i = 0; i < half; i++) {
      const base = Math.pow(this.theta, 2 * i / this.dim);
      const extrapolation = 1 / base;
      const interpolation = 1 / (scalingFactor * base);
      const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
      invFreq[i] = interpolation * ramp + extrapolation * (1 - ramp);
    }
    return invFreq;
  }

  override magnitude(): number {
    const {scalingFactor, mscale, mscaleAllDim} = this.scalingParams;
    return yarnGetMscale(scalingFactor, mscale) / yarnGetMscale(scalingFactor, mscaleAllDim);
  }

  override computeScale(baseScale: number): number {
    const m = yarnGetMscale(this.scalingParams.scalingFactor, this.scalingParams.mscale);
    return baseScale * m * m;
  }

  override getConfig(): {[key: string]: number|boolean|string|{[key: string]: number}} {
    return {...super.getConfig(), scalingParams: {...this.scalingParams}};
  }
}

/** Rebuilds a rope from `{className, config}` as written by the layer's getConfig. */
export function ropeFromConfig(
    serialized: {className: string, config: {[key: string]: unknown}}): RotaryEmbedding {
  const config = serialized.config as unknown as DeepseekYarnRotaryEmbeddingArgs;
  if (serialized.className === DeepseekYarnRotaryEmbedding.className) {
    return new DeepseekYarnRotaryEmbedding(config);
  }
  if (serialized.className === RotaryEmbedding.className) return new RotaryEmbedding(config);
  throw new Error(`rope.className: expected 'RotaryEmbedding' or 'DeepseekYarnRotaryEmbedding', ` +
                  `got '${serialized.className}'`);
}
