import {checkInteger} from '../ops/check.js';

export interface KVCacheParamsArgs {
  /** Only 'float32' for now (tfjs computes float32). */
  dtype?: 'float32';
  /** Always 1 for MLA: one latent row shared by all heads. */
  nKvHeads?: number;
  /** Width of a cache row: kvLoraRank + qkRopeHeadDim (576 at DeepSeek sizes). */
  headDim: number;
  /** Tokens per page, any integer ≥ 1. */
  pageSize?: number;
  /** One cache storage per layer. */
  numLayers?: number;
  isMla?: boolean;
}

/** The shape of a paged latent cache, as MAX's KVCacheParams. */
export class KVCacheParams {
  readonly dtype: 'float32';
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly pageSize: number;
  readonly numLayers: number;
  readonly isMla: boolean;

  constructor(args: KVCacheParamsArgs) {
    if (args === undefined || args === null) throw new Error('KVCacheParams: expected an object with headDim, got ' + args);
    const dtype = args.dtype ?? 'float32';
    if (dtype !== 'float32') throw new Error(`KVCacheParams dtype: expected 'float32', got '${dtype}'`);
    this.dtype = dtype;
    this.nKvHeads = args.nKvHeads ?? 1;
    this.isMla = args.isMla ?? true;
    if (this.isMla && this.nKvHeads !== 1) {
      throw new Error(`KVCacheParams nKvHeads: expected 1 for an MLA cache, got ${this.nKvHeads}`);
    }
    checkInteger('KVCacheParams nKvHeads', this.nKvHeads, 1);
    checkInteger('KVCacheParams headDim', args.headDim, 1);
    this.headDim = args.headDim;
    this.pageSize = args.pageSize ?? 128;
    checkInteger('KVCacheParams pageSize', this.pageSize, 1);
    this.numLayers = args.numLayers ?? 1;
    checkInteger('KVCacheParams numLayers', this.numLayers, 1);
  }

  /** Floats per token per layer. */
  get rowWidth(): number {
    return this.nKvHeads * this.headDim;
  }
}
