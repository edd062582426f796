/**
 * The contracts of this package's kernels. The `cpu` kernels (src/kernels/cpu) are the
 * readable reference; the `webgpu` kernels (src/kernels/webgpu) implement exactly the same
 * inputs, attributes and outputs. Shapes use the notation of spec/MLA.md:
 * T new tokens, B sequences, H heads, N = qkNopeHeadDim, R = qkRopeHeadDim,
 * V = vHeadDim, L = kvLoraRank, D = L + R (the width of a cache row).
 *
 * Per-token metadata shared by every kernel of a step:
 *   tokenInfo: int32 [T, 3], row t = (b, p, slot):
 *     b    = index of the token's sequence in the batch (row of `lookup`),
 *     p    = the token's absolute position (cached tokens before it + its index among the new),
 *     slot = the flat cache row it is written to: lookup[b, floor(p / pageSize)] * pageSize
 *            + p mod pageSize.
 *   lookup: int32 [B, maxPagesPerSeq], the page table: token k of batch row b lives in page
 *     lookup[b, floor(k / pageSize)], row k mod pageSize. Entries past a sequence's pages are 0.
 */

/**
 * FusedRope: RoPE of every head's q_rope and of k_pe at each token's absolute position,
 * RMSNorm of c_kv, the cache write and (optionally) the W_UK absorption of q — in one kernel,
 * reading q and c_kv | k_pe where the projection wrote them.
 *
 * inputs:
 *   q:         float32 [T, H, N + R], or [T, Wq] whose first H·(N + R) columns are the heads
 *              (e.g. the fused q | kv projection; then attrs numHeads and qkNopeHeadDim say H, N)
 *   kv:        float32 [T, Wkv]       its LAST L + R columns are raw c_kv (L) | raw k_pe (R)
 *   gamma:     float32 [L]             kv_a_layernorm weight
 *   freqsCis:  float32 [maxSeqLen, R]  rows [cos0, sin0, cos1, sin1, …] (YaRN factor included)
 *   tokenInfo: int32   [T, 3]          (b, p, slot) as above; only p and slot are read
 *   cache:     float32 [pages, pageSize, D]  WRITTEN IN PLACE: row `slot` becomes
 *              [RMSNorm(c_kv; gamma, eps) | rope(k_pe, p)] (or packed 16-bit, attrs.cacheDtype:
 *              the row rounded to nearest-even)
 *   wUkT:      float32 [H, L, N]       optional: W_UK per head as [out, in] (the absorbed path)
 * attrs:
 *   eps:          number   RMSNorm epsilon
 *   interleaved:  boolean  true: pairs (2i, 2i+1); false: pairs (i, i + R/2)
 *   numHeads, qkNopeHeadDim: H and N, with a 2-D q only
 * output:
 *   without wUkT: float32 [T, H, N + R], q with rope(q_rope, p) in columns N..N+R of each head;
 *   with wUkT:    float32 [T, H, L + R], the query MLADecode reads: columns 0..L hold
 *                 q_lat[h] = W_UK[h]ᵀ · q_nope[h] (= wUkT[h] · q_nope[h]), columns L..L+R the
 *                 roped q_rope.
 */
export const FUSED_ROPE = 'FusedRope';

/**
 * MLAPrefill: the non-absorbed ("MHA mode") causal attention of the new tokens over one
 * chunk of their sequences' context, the chunk's K_nope and V already decompressed.
 *
 * inputs:
 *   q:         float32 [T, H, N + R]   roped queries (FusedRope's output)
 *   kvBuffer:  float32 [rows, H, N + V]  latent rows of this chunk · kv_b_projᵀ:
 *              K_nope (N) | V (V) per head
 *   cache:     float32 [pages, pageSize, D]  k_rope is read from columns L..D of a key's row
 *   lookup:    int32   [B, maxPagesPerSeq]
 *   tokenInfo: int32   [T, 3]
 *   chunkInfo: int32   [B, 3], row b = (bufferStart, firstToken, numRows): buffer row
 *              bufferStart + j holds token firstToken + j of batch row b, for 0 ≤ j < numRows.
 * attrs:
 *   scale:          number  λ, the softmax scale
 *   qkNopeHeadDim:  number  N (then R = q.shape[2] − N, V = kvBuffer.shape[2] − N, L = D − R)
 * output:
 *   float32 [T, H, V + 1]: for token t (sequence b, position p) and head h, over the keys k of
 *   this chunk with k ≤ p: columns 0..V = Σ softmax(s)·V[k], column V = log Σ exp(s)
 *   (−Infinity and a zero output when no key of the chunk is visible), where
 *   s_k = scale · (q_nope · K_nope[k] + q_rope · k_rope[k]). Chunks merge by log-sum-exp.
 */
export const MLA_PREFILL = 'MLAPrefill';

/**
 * MLADecode: the absorbed ("MQA mode") causal attention over the paged cache.
 *
 * inputs:
 *   q:         float32 [T, H, D]   [q_lat (L) | roped q_rope (R)], q_lat[h] = W_UK[h]ᵀ · q_nope[h]
 *   cache:     float32 [pages, pageSize, D]
 *   lookup:    int32   [B, maxPagesPerSeq]
 *   tokenInfo: int32   [T, 3]
 * attrs:
 *   scale:             number  λ
 *   kvLoraRank:        number  L (the first L columns of a cache row are the latent, and V)
 *   maxContextLength:  number  the longest context of the step, max(p + 1) (sizes the split
 *                              over the context on webgpu; every key k ≤ p is attended on every
 *                              backend even past it)
 * output:
 *   float32 [T, H, L]: o_lat = Σ_{k ≤ p} softmax_k(scale · q · cacheRow_k) · cacheRow_k[0..L].
 */
export const MLA_DECODE = 'MLADecode';

/**
 * MLALinear: y = x · wᵀ, a bias-free HF Linear with w in the [out, in] layout (the layer's
 * projections, the decompression by kv_b_proj and the per-head W_UV product). The webgpu
 * kernel keeps its partial sums in registers with no workgroup memory. No gradient is
 * registered: the layer's training path (attendWithoutCache) uses tf.matMul.
 *
 * inputs:
 *   x:      float32 [M, Kx] with Kx ≥ K (the first K columns of each row are read; the op
 *           accepts Kx > K only with its readFirstColumns option),
 *           or [G, M, K] (one product per batch entry g), or with attrs.tokenMajor [M, G, K]
 *   w:      float32 [N1, K], or [G, N1, K] with a batch dim; with attrs.weightDtype 16-bit,
 *           int32 [(G,) N1, K / 2] (see WeightDtype)
 *   w2:     float32 [N2, K]  optional, 2-D x only: output columns N1..N1+N2 use w2's rows
 *           (one product over the concatenation [w; w2] without a concatenated copy: MAX's wqkv)
 *   gamma:  float32 [K]      optional, with attrs.normEps: each x row is replaced by
 *           RMSNorm(x_row[0..K]; gamma, normEps) first (q-LoRA's q_a_layernorm before q_b_proj)
 *   residual: float32, the output's shape, optional: added to the product (a decoder's residual
 *           stream: y = residual + x · wᵀ in the same dispatch)
 * attrs:
 *   normEps:     number   with gamma
 *   tokenMajor:  boolean  x [M, G, K] and y [M, G, N] (tokens first, e.g. o_lat [T, H, L])
 * output:
 *   float32 [M, N], [G, M, N] or (tokenMajor) [M, G, N]: y[g, m, n] = Σ_k x[g, m, k] · w[g, n, k]
 *   (+ residual[g, m, n]).
 */
export const LINEAR = 'MLALinear';

/**
 * MLAGatherRows: cache rows by slot, widened to float32 (the prefill path's latent rows before
 * the kv_b_proj decompression).
 *
 * inputs:
 *   cache:  [pages, pageSize, D] float32, or packed int32 (attrs.cacheDtype)
 *   slots:  int32 [rows]   flat cache rows (page · pageSize + row in page)
 * attrs:
 *   cacheDtype:  CacheDtype
 *   columns:     number  C ≤ D: the first C values of each row are returned
 * output:
 *   float32 [rows, C]: out[r, c] = cache row slots[r], value c.
 */
export const MLA_GATHER_ROWS = 'MLAGatherRows';

export interface MLAGatherRowsAttrs {
  cacheDtype: CacheDtype;
  columns: number;
  /** L and R, with a float8_e4m3fn cache. */
  kvLoraRank?: number;
  ropeDim?: number;
}

/**
 * How the `cache` input of FusedRope, MLADecode, MLAPrefill and MLAGatherRows stores its rows:
 * 'float32' (default): float32 [pages, pageSize, D]; 'bfloat16' / 'float16': int32
 * [pages, pageSize, D / 2], two values rounded to nearest-even per word (value 2i in the low
 * 16 bits of word i; see src/precision/half.ts); 'float8_e4m3fn': int32 [pages, pageSize, W]
 * in FlashMLA's layout (src/precision/fp8.ts: e4m3 codes of c_kv with a float32 scale per 128
 * values, then k_pe as bf16), which needs L and R (FusedRope and MLADecode know them; MLAPrefill
 * and MLAGatherRows take them as attrs). Kernels widen on read and round or quantize on write;
 * arithmetic stays float32.
 */
export type CacheDtype = 'float32'|'bfloat16'|'float16'|'float8_e4m3fn';

/**
 * How MLALinear's w / w2 and FusedRope's wUkT store their values: 'float32' (default), or
 * 'bfloat16' / 'float16' packed two per int32 word along the last (input, K) axis, so a
 * [N, K] weight is an int32 [N, K / 2] tensor (value 2i in the low 16 bits of word i).
 */
export type WeightDtype = 'float32'|'bfloat16'|'float16';

export interface FusedRopeAttrs {
  eps: number;
  interleaved: boolean;
  cacheDtype?: CacheDtype;
  /** H, with a 2-D q. */
  numHeads?: number;
  /** N, with a 2-D q. */
  qkNopeHeadDim?: number;
  /** How wUkT is stored (16-bit: int32 [H, L, N / 2]). */
  weightDtype?: WeightDtype;
}

export interface MLALinearAttrs {
  /** With the gamma input: the RMSNorm epsilon. */
  normEps?: number;
  /** How w and w2 are stored (K = 2 × their last dim when 16-bit). */
  weightDtype?: WeightDtype;
  /** x [M, G, K] and y [M, G, N]. */
  tokenMajor?: boolean;
}

export interface MLAPrefillAttrs {
  scale: number;
  qkNopeHeadDim: number;
  cacheDtype?: CacheDtype;
  /** L, with a float8_e4m3fn cache. */
  kvLoraRank?: number;
}

export interface MLADecodeAttrs {
  scale: number;
  kvLoraRank: number;
  maxContextLength: number;
  cacheDtype?: CacheDtype;
}

/**
 * MLAPackHalf: float32 values rounded to 16 bits (nearest-even) and packed two per int32 word.
 *
 * inputs:  x: float32 [..., K], K even
 * attrs:   dtype: 'bfloat16' | 'float16'
 * output:  int32 [..., K / 2]: word i = bits(x[2i]) | bits(x[2i + 1]) << 16.
 */
export const MLA_PACK_HALF = 'MLAPackHalf';

/**
 * MLAUnpackHalf: the inverse of MLAPackHalf, exactly.
 *
 * inputs:  words: int32 [..., K / 2]
 * attrs:   dtype: 'bfloat16' | 'float16'
 * output:  float32 [..., K].
 */
export const MLA_UNPACK_HALF = 'MLAUnpackHalf';

export interface MLAHalfAttrs {
  dtype: 'bfloat16'|'float16';
}

/**
 * MLARMSNorm: each row RMS-normalized and scaled (the decoder's input_layernorm), one kernel
 * instead of tfjs's six (square, mean, add, rsqrt, mul, mul) and no eps upload.
 *
 * inputs:  x: float32 [T, D]; gamma: float32 [D]
 * attrs:   eps: number
 * output:  float32 [T, D]: x[t, d] / sqrt(mean_d(x[t]²) + eps) · gamma[d].
 */
export const MLA_RMS_NORM = 'MLARMSNorm';

export interface MLARMSNormAttrs {
  eps: number;
}

/**
 * MLASwiGLU: the SwiGLU gate of an MLP whose gate and up projections were computed together.
 *
 * inputs:  x: float32 [T, 2I] (gate | up)
 * output:  float32 [T, I]: silu(x[t, i]) · x[t, I + i], silu(g) = g / (1 + exp(−g)).
 */
export const MLA_SWIGLU = 'MLASwiGLU';
