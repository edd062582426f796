// Types of helpers.mjs, for the browser demo (demos/web/main.ts, type-checked with
// `npx tsc -p demos/web/tsconfig.json`). The package is passed in as `mla`.
import type * as MLA from '../../src/index.js';
import type {GraphMode, KVCacheParams, LatentAttentionWithRope, LatentAttentionWithRopeArgs, PagedKVCache} from '../../src/index.js';

export type MLAModule = typeof MLA;

export declare const V2_LITE: Readonly<{
  hiddenSize: number, numHeads: number, kvLoraRank: number, qkNopeHeadDim: number,
  qkRopeHeadDim: number, vHeadDim: number, ropeTheta: number, rmsNormEps: number,
  yarn: Readonly<{scalingFactor: number, originalMaxPositionEmbeddings: number, betaFast: number,
                  betaSlow: number, mscale: number, mscaleAllDim: number}>,
}>;

export interface HostTensor {
  shape: number[];
  values: Float32Array;
}

export declare function prng(seed: number): () => number;
export declare function uniform(random: () => number, n: number, std: number): Float32Array;
export declare function randomWeights(shapes: Iterable<readonly [string, number[]]>, seed: number):
    Record<string, HostTensor>;
export declare function randomInputs(seed: number, lengths: number[], hidden: number): Float32Array[];
export declare function gatherInputs(inputs: Float32Array[], ranges: Array<[number, number]>, hidden: number):
    Float32Array;

export declare function requiredKernels(mla: MLAModule, prompts: number[], graphMode?: GraphMode): string[];
export declare function missingKernels(kernels: string[], backend?: string): string[];

export type DemoDtype = 'float32'|'bfloat16'|'float16';
export declare const DTYPES: readonly DemoDtype[];
export declare const BYTES_PER_VALUE: Readonly<Record<DemoDtype, number>>;
export declare function normalizeDtype(name: string): string;
export declare function cacheBytesPerToken(kvParams: KVCacheParams): number;
export declare function mhaBytesPerToken(spec: ModelSpec, dtype?: string): number;

/** Layer sizes (or a DeepSeek config.json in hfConfig, which then decides them). */
export interface ModelSpec {
  hidden: number;
  heads: number;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  pageSize: number;
  qLoraRank?: number|null;
  graphMode?: GraphMode;
  hfConfig?: object|null;
  /** The layer's weight dtype (and normDtype / oProjDtype); default 'float32'. */
  dtype?: string;
  /** The latent cache's dtype (KVCacheParams dtype); default 'float32'. */
  cacheDtype?: string;
}

export interface Model {
  layer: LatentAttentionWithRope;
  cache: PagedKVCache;
  args: LatentAttentionWithRopeArgs;
  kvParams: KVCacheParams;
  /** Bytes the layer holds after loading its weights (tf.memory().numBytes). */
  weightBytes: number;
  /** Values of the loaded weights. */
  numParams: number;
}

export declare function layerArgs(mla: MLAModule, spec: ModelSpec, maxSeqLen: number): LatentAttentionWithRopeArgs;
export declare function buildModel(mla: MLAModule, spec: ModelSpec, weights: Record<string, HostTensor>|null,
                                   seqLens: number[], namePrefix?: string): Model;

export declare function disposeModel(model: Model): number;

export declare function runStep(model: Model, seqIds: number[], counts: number[], xValues: Float32Array,
                                hidden: number, read?: true): Promise<{values: Float32Array, offsets: number[]}>;
export declare function runStep(model: Model, seqIds: number[], counts: number[], xValues: Float32Array,
                                hidden: number, read: false): Promise<{values: null, offsets: number[]}>;

export declare function compilePipelines(
    makeModel: () => Model,
    run: {seqIds: number[], prompts: number[], steps: number, inputs: Float32Array[], hidden: number},
    onPending?: (pending: Array<Promise<unknown>>) => void): Promise<void>;

export declare function runSequence(model: Model, prompt: number, steps: number, input: Float32Array,
                                    hidden: number, onStep?: (step: number) => void): Promise<Float32Array[]>;

export declare function compareOutputs(got: ArrayLike<number>[], ref: ArrayLike<number>[]):
    {maxDiff: number, maxRef: number};
