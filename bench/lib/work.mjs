// Bytes and FLOPs of each kernel and of a whole layer step, from the math (float32: 4 bytes a
// value; cache rows and weights at their storage's bytes per value — 2 for bfloat16 / float16),
// and the roofline time max(bytes / GB/s, FLOPs / GFLOP/s).

const F = 4;

/**
 * MLADecode over B sequences of S context tokens (one new token each): every cache row read
 * once per sequence (S·(L+R) floats), q [B, H, L+R] read, o_lat [B, H, L] written;
 * FLOPs 2·H·S·((L+R) + L) per token (scores, then P·latent).
 */
export function mlaDecodeWork(cfg, B, S, cacheBytes = F) {
  const {numHeads: H, kvLoraRank: L, qkRopeHeadDim: R} = cfg;
  const D = L + R;
  return {
    bytes: cacheBytes * B * S * D + F * (B * H * D + B * H * L + B * 3),
    flops: 2 * B * H * S * (D + L),
  };
}

/**
 * MLAPrefill of one fresh prompt of T tokens (one chunk, S = T rows): kvBuffer [T, H, N+V] and
 * k_rope (T·R from the cache) read, q [T, H, N+R] read, [T, H, V+1] written; causal, token t
 * sees t+1 keys: FLOPs 2·H·(T(T+1)/2)·((N+R) + V).
 */
export function mlaPrefillWork(cfg, T, cacheBytes = F) {
  const {numHeads: H, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = cfg;
  return {
    bytes: cacheBytes * T * R + F * (T * H * (N + V) + T * H * (N + R) + T * H * (V + 1) + T * 3),
    flops: 2 * H * (T * (T + 1) / 2) * ((N + R) + V),
  };
}

/**
 * FusedRope of T tokens: q [T, H, N+R] read and written, kv [T, L+R] read, the cache rows
 * [T, L+R] written, gamma and T rows of freqsCis read. Bytes-bound: FLOPs are the rotations
 * (6 per pair) and RMSNorm (~4 per element).
 */
export function fusedRopeWork(cfg, T, cacheBytes = F) {
  const {numHeads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R} = cfg;
  const D = L + R;
  return {
    bytes: cacheBytes * T * D + F * (2 * T * H * (N + R) + T * D + L + T * R + T * 3),
    flops: T * (6 * (H + 1) * (R / 2) + 4 * L),
  };
}

function weightFloats(cfg) {
  const {numHeads: H, hiddenSize: Dm, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = cfg;
  return H * (N + R) * Dm + (L + R) * Dm + L + H * (N + V) * L + Dm * H * V;
}

/**
 * A whole layer step (what bounds it): all weights read once, x read, y written, plus the
 * attention: decode reads the B·S cache rows; prefill writes and reads the decompressed K/V.
 */
export function layerStepWork(cfg, kind, B, S, {cacheBytes = F, weightBytes = F} = {}) {
  const {numHeads: H, hiddenSize: Dm, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = cfg;
  const D = L + R;
  const T = kind === 'decode' ? B : B * S;
  const projections = 2 * T * Dm * (H * (N + R) + D) + 2 * T * H * V * Dm;
  if (kind === 'decode') {
    return {
      bytes: weightBytes * weightFloats(cfg) + cacheBytes * B * S * D + F * 2 * T * Dm,
      flops: projections + 2 * T * H * N * L + mlaDecodeWork(cfg, B, S).flops + 2 * T * H * L * V,
    };
  }
  return {
    bytes: weightBytes * weightFloats(cfg) + cacheBytes * T * D + F * (2 * T * Dm + 2 * T * H * (N + V)),
    flops: projections + 2 * T * L * H * (N + V) + B * mlaPrefillWork(cfg, S).flops,
  };
}

/** Roofline time in ms and which side bounds it. */
export function roofline(work, gbPerS, gflopPerS) {
  const memoryMs = work.bytes / (gbPerS * 1e6);
  const computeMs = work.flops / (gflopPerS * 1e6);
  return {ms: Math.max(memoryMs, computeMs), memoryMs, computeMs,
          bound: memoryMs >= computeMs ? 'memory' : 'compute'};
}
