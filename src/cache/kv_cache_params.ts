import {checkInteger} from '../ops/check.js';
import {HalfDtype, isHalfDtype, packedLength} from '../precision/half.js';
import {Fp8RowLayout, fp8RowLayout} from '../precision/fp8.js';

/** What a cache row is stored as. Arithmetic is float32 whatever the storage. */
export type KVCacheDtype = 'float32'|HalfDtype|'float8_e4m3fn';

export interface KVCacheParamsArgs {
  /**
   * 'float32' (default); 'bfloat16' / 'float16': rows rounded to nearest-even and packed two
   * values per 32-bit word (half the bytes); 'float8_e4m3fn': FlashMLA's layout — c_kv as e4m3
   * codes with one float32 scale per 128 values, k_pe as bf16 (656 bytes at 512 + 64; see
   * src/precision/fp8.ts).
   */
  dtype?: KVCacheDtype;
  /**
   * R, the k_pe part of a row (default 64): only the FP8 layout needs it, to split a row into
   * c_kv (headDim − R values, a multiple of 4) and k_pe.
   */
  qkRopeHeadDim?: number;
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
  /** R (the FP8 layout's k_pe part). */
  readonly qkRopeHeadDim: number;

  constructor(args: KVCacheParamsArgs) {
    if (args === undefined || args === null) throw new Error('KVCacheParams: expected an object with headDim, got ' + args);
    const dtype = args.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'float8_e4m3fn' && !isHalfDtype(dtype)) {
      throw new Error(`KVCacheParams dtype: expected 'float32', 'bfloat16', 'float16' or ` +
                      `'float8_e4m3fn', got '${dtype}'`);
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
    this.qkRopeHeadDim = args.qkRopeHeadDim ?? 64;
    if (dtype === 'float8_e4m3fn') {
      checkInteger('KVCacheParams qkRopeHeadDim', this.qkRopeHeadDim, 2, args.headDim - 4);
      const latent = args.headDim - this.qkRopeHeadDim;
      if (latent % 4 !== 0 || this.qkRopeHeadDim % 2 !== 0) {
        throw new Error(`KVCacheParams headDim: the float8_e4m3fn layout needs c_kv = headDim − ` +
                        `qkRopeHeadDim a multiple of 4 and an even qkRopeHeadDim, got ${latent} + ` +
                        `${this.qkRopeHeadDim}`);
      }
    }
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

  /** The FP8 row layout, or null for other dtypes. */
  get fp8Layout(): Fp8RowLayout|null {
    return this.dtype === 'float8_e4m3fn' ?
        fp8RowLayout(this.rowWidth - this.qkRopeHeadDim, this.qkRopeHeadDim) : null;
  }

  /** Elements of the storage tensor per row: rowWidth float32 values, or int32 words. */
  get storedRowWidth(): number {
    const fp8 = this.fp8Layout;
    if (fp8 !== null) return fp8.rowWords;
    return this.halfDtype === null ? this.rowWidth : packedLength(this.rowWidth);
  }

  /** Bytes of one token's row in one layer. */
  get bytesPerToken(): number {
    return 4 * this.storedRowWidth;
  }
}
