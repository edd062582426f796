import {checkInteger} from '../ops/check.js';
import {HalfDtype, isHalfDtype, packedLength} from '../precision/half.js';

/** What a cache row is stored as. Arithmetic is float32 whatever the storage. */
export type KVCacheDtype = 'float32'|HalfDtype;

export interface KVCacheParamsArgs {
  /**
   * 'float32' (default), or 'bfloat16' / 'float16': rows rounded to nearest-even and packed two
   * values per 32-bit word (half the bytes). ('float8_e4m3fn' is not supported yet.)
   */
  dtype?: KVCacheDtype;
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
  readonly dtype: KVCacheDtype;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly pageSize: number;
  readonly numLayers: number;
  readonly isMla: boolean;

  constructor(args: KVCacheParamsArgs) {
    if (args === undefined || args === null) throw new Error('KVCacheParams: expected an object with headDim, got ' + args);
    const dtype = args.dtype ?? 'float32';
    if (dtype === ('float8_e4m3fn' as string)) {
      throw new Error(`KVCacheParams dtype: 'float8_e4m3fn' is not supported yet (expected 'float32', ` +
                      `'bfloat16' or 'float16')`);
    }
    if (dtype !== 'float32' && !isHalfDtype(dtype)) {
      throw new Error(`KVCacheParams dtype: expected 'float32', 'bfloat16' or 'float16', got '${dtype}'`);
    }
    this.dtype = dtype;
    this.nKvHeads = args.nKvHeads ?? 1;
    this.isMla = args.isMla ?? true;
    if (this.isMla && this.nKvHeads !== 1) {
      throw new Error(`KVCacheParams nKvHeads: expected 1 for an MLA cache, got ${this.nKvHeads}`);
    }
    checkInteger('KVCacheParams nKvHeads', this.nKvHeads, 1);
    checkInteger('KVCacheParams headDim', args.headDim, 1);
    if (isHalfDtype(dtype) && args.headDim % 2 !== 0) {
      throw new Error(`KVCacheParams headDim: expected an even width with dtype '${dtype}' (two values ` +
                      `a 32-bit word), got ${args.headDim}`);
    }
    this.headDim = args.headDim;
    this.pageSize = args.pageSize ?? 128;
    checkInteger('KVCacheParams pageSize', this.pageSize, 1);
    this.numLayers = args.numLayers ?? 1;
    checkInteger('KVCacheParams numLayers', this.numLayers, 1);
  }

  /** Values per token per layer. */
  get rowWidth(): number {
    return this.nKvHeads * this.headDim;
  }

  /** The 16-bit storage dtype, or null for float32 rows. */
  get halfDtype(): HalfDtype|null {
    return isHalfDtype(this.dtype) ? this.dtype : null;
  }

  /** Elements of the storage tensor per row: rowWidth (float32) or rowWidth / 2 int32 words. */
  get storedRowWidth(): number {
    return this.halfDtype === null ? this.rowWidth : packedLength(this.rowWidth);
  }

  /** Bytes of one token's row in one layer. */
  get bytesPerToken(): number {
    return 4 * this.storedRowWidth;
  }
}
