/**
 * The programs of the webgpu FusedRope kernel (contract in ../kernel_names.ts):
 * RopeCacheWriteProgram writes `[RMSNorm(c_kv) | rope(k_pe)]` into the cache in place, and
 * RopeQProgram produces q [T, H, N + R] with its rope columns rotated. (The absorbed query
 * [T, H, L + R] is MLALinear's program with a rope tail: see FusedRope.ts.)
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';
import {ropePairWGSL} from './rope_wgsl.js';
import type {CacheDtype} from '../kernel_names.js';
import type {HalfDtype} from '../../precision/half.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';
import {fp8WGSL, fp8WGSLKey} from './fp8_wgsl.js';
import {E4M3_MAX, FP8_BLOCK, Fp8RowLayout} from '../../precision/fp8.js';

/** What the rope programs' shaders depend on (their workgroup size is fixed: 64). */
export interface RopeParams {
  /** Pairs (2i, 2i+1) when true, else (i, i + R/2): see rope_wgsl.ts. */
  interleaved: boolean;
}

function ropeKey(p: RopeParams): string {
  return p.interleaved ? 'il' : 'half';
}

/** The cache write's params: the rope pairing and how the cache stores its rows. */
export interface RopeCacheWriteParams extends RopeParams {
  cacheDtype: CacheDtype;
  /** The row layout of a float8_e4m3fn cache (null otherwise). */
  fp8: Fp8RowLayout|null;
}

export function ropeCacheWriteShaderKey(p: RopeCacheWriteParams): string {
  return `mlaRopeCacheWrite_${ropeKey(p)}` + (p.fp8 !== null ? `_${fp8WGSLKey(p.fp8)}` :
      p.cacheDtype === 'float32' ? '' : `_${halfWGSLKey(p.cacheDtype as HalfDtype)}`);
}

export function ropeQShaderKey(p: RopeParams): string {
  return `mlaRopeQ_${ropeKey(p)}`;
}

/**
 * One workgroup per token: RMSNorm of the token's c_kv (a tree reduction of the squares in
 * workgroup memory) and the rope of its k_pe, written into cache row `slot` — the output is
 * the cache tensor itself, passed to runWebGPUProgram as `output`.
 * Inputs: kv [T, ≥ L+R] (c_kv | k_pe are the last L + R columns of a row), gamma [L],
 * freqsCis [maxSeqLen, R], tokenInfo [T, 3]. Uniform: eps.
 */
export class RopeCacheWriteProgram implements WebGPUProgram {
  variableNames = ['kv', 'gamma', 'freqsCis', 'tokenInfo'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  uniforms = 'eps : f32,';
  private readonly params: RopeCacheWriteParams;

  /**
   * `cacheShape`: [pages, pageSize, L+R] (16-bit: [pages, pageSize, (L+R)/2] words);
   * `numTokens`: T (one workgroup each).
   */
  constructor(params: RopeCacheWriteParams, cacheShape: number[], numTokens: number) {
    this.params = params;
    this.outputShape = cacheShape;
    this.dispatchLayout = flatLayout(cacheShape.length);
    this.dispatch = [numTokens, 1, 1];
    this.shaderKey = ropeCacheWriteShaderKey(params);
  }

  getUserCode(): string {
    const WG = this.workgroupSize[0];
    const fp8 = this.params.fp8;
    const half = fp8 === null && this.params.cacheDtype !== 'float32';
    const WORDS = fp8 === null ? 0 : fp8.rowWords;
    return `${half ? halfWGSL(this.params.cacheDtype as HalfDtype) : fp8 !== null ? fp8WGSL(fp8, false) : ''}
    // Value c of the token's cache row: RMSNorm(c_kv) for c < L, then rope(k_pe).
    fn rowValue(kvStart : i32, c : i32, inverseRms : f32, freqsStart : i32) -> f32 {
      let latentDim = uniforms.gammaShape;
      if (c < latentDim) {
        return kv[kvStart + c] * inverseRms * gamma[c];
      }
      let ropeDim = uniforms.freqsCisShape.y;
      let j = c - latentDim;
      ${ropePairWGSL(this.params.interleaved)}
      let cosine = freqsCis[freqsStart + 2 * pairIndex];
      let sine = freqsCis[freqsStart + 2 * pairIndex + 1];
      let x = kv[kvStart + latentDim + j];
      let partner = kv[kvStart + latentDim + j + partnerOffset];
      return x * cosine + select(-partner, partner, isSecond) * sine;
    }

    var<workgroup> sumSquares : array<f32, ${WG}>;${fp8 === null ? '' : `
    var<workgroup> blockScales : array<f32, ${fp8.scaleWords}>;`}
    ${mainHeader('index')} {
      // A dispatch wider than 65535 workgroups is folded into y/z with spare workgroups at
      // the end: they read token T − 1 but write nothing (a clamped write could hit a row).
      let numTokens = uniforms.kvShape.x;
      let valid = index / ${WG} < numTokens;
      let token = min(index / ${WG}, numTokens - 1);
      let lane = i32(localIndex);
      let latentDim = uniforms.gammaShape;
      let ropeDim = uniforms.freqsCisShape.y;
      let rowWidth = ${fp8 !== null ? fp8.latentDim + fp8.ropeDim : `uniforms.outShape.z${half ? ' * 2' : ''}`};
      let kvStart = token * uniforms.kvShape.y + uniforms.kvShape.y - rowWidth;
      let position = tokenInfo[token * 3 + 1];
      let rowStart = tokenInfo[token * 3 + 2] * rowWidth;

      var partial = 0.0;
      for (var i = lane; i < latentDim; i += ${WG}) {
        let x = kv[kvStart + i];
        partial += x * x;
      }
      sumSquares[lane] = partial;
      workgroupBarrier();
      for (var stride = ${WG / 2}; stride > 0; stride >>= 1) {
        if (lane < stride) {
          sumSquares[lane] += sumSquares[lane + stride];
        }
        workgroupBarrier();
      }
      ${fp8 === null ? `if (!valid) {
        return;
      }` : '// FP8: spare workgroups go on through the barriers below and write nothing.'}
      let inverseRms = 1.0 / sqrt(sumSquares[0] / f32(latentDim) + uniforms.eps);
      let freqsStart = position * ropeDim;
${fp8 !== null ? `      // FP8 rows: per block of ${FP8_BLOCK} c_kv values the scale max|v| / 448 (a tree reduction, as
      // for the squares: the loop bounds are uniform), then codes, scales and bf16 k_pe words.
      workgroupBarrier();  // every lane has read sumSquares[0]
      for (var b = 0; b < ${fp8.scaleWords}; b++) {
        var blockMax = 0.0;
        for (var c = b * ${FP8_BLOCK} + lane; c < min(latentDim, (b + 1) * ${FP8_BLOCK}); c += ${WG}) {
          blockMax = max(blockMax, abs(rowValue(kvStart, c, inverseRms, freqsStart)));
        }
        sumSquares[lane] = blockMax;
        workgroupBarrier();
        for (var stride = ${WG / 2}; stride > 0; stride >>= 1) {
          if (lane < stride) {
            sumSquares[lane] = max(sumSquares[lane], sumSquares[lane + stride]);
          }
          workgroupBarrier();
        }
        if (lane == 0) {
          blockScales[b] = sumSquares[0] / ${E4M3_MAX}.0;
        }
        workgroupBarrier();
      }
      if (!valid) {
        return;
      }
      let wordStart = tokenInfo[token * 3 + 2] * ${WORDS};
      for (var w = lane; w < ${fp8.codeWords}; w += ${WG}) {
        let scale = blockScales[(4 * w) / ${FP8_BLOCK}];
        var word = 0u;
        for (var j = 0; j < 4; j++) {
          // A zero scale (an all-zero block) gives zero codes, never 0 / 0.
          let scaled = select(0.0, rowValue(kvStart, 4 * w + j, inverseRms, freqsStart) / scale, scale > 0.0);
          word |= f32ToE4m3(scaled) << (8u * u32(j));
        }
        result[wordStart + w] = bitcast<i32>(word);
      }
      for (var b = lane; b < ${fp8.scaleWords}; b += ${WG}) {
        result[wordStart + ${fp8.codeWords} + b] = bitcast<i32>(blockScales[b]);
      }
      for (var w = lane; w < ${fp8.ropeWords}; w += ${WG}) {
        let c = latentDim + 2 * w;
        result[wordStart + ${fp8.codeWords + fp8.scaleWords} + w] =
            packHalf2(rowValue(kvStart, c, inverseRms, freqsStart), rowValue(kvStart, c + 1, inverseRms, freqsStart));
      }` : half ? `      // 16-bit rows: each lane writes whole words, two values rounded to nearest-even.
      for (var w = lane; w < rowWidth / 2; w += ${WG}) {
        result[rowStart / 2 + w] = packHalf2(rowValue(kvStart, 2 * w, inverseRms, freqsStart),
                                             rowValue(kvStart, 2 * w + 1, inverseRms, freqsStart));
      }` : `      for (var c = lane; c < rowWidth; c += ${WG}) {
        result[rowStart + c] = rowValue(kvStart, c, inverseRms, freqsStart);
      }`}
    }`;
  }
}

/**
 * One invocation per element of the output q [T, H, N+R]: copies the nope columns and rotates
 * the rope columns at the token's position. q is read where it lives: head h of token t at
 * t·qRowStride + h·(N+R) (a [T, H, N+R] tensor, or the first H·(N+R) columns of a wider row,
 * e.g. the fused q|kv projection). Inputs: q, freqsCis [maxSeqLen, R], tokenInfo [T, 3].
 * Uniform: qRowStride.
 */
export class RopeQProgram implements WebGPUProgram {
  variableNames = ['q', 'freqsCis', 'tokenInfo'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  uniforms = 'qRowStride : i32,';
  size = true;
  private readonly params: RopeParams;

  /** `outputShape`: [T, H, N+R]. */
  constructor(params: RopeParams, outputShape: number[]) {
    this.params = params;
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    const size = outputShape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / this.workgroupSize[0]), 1, 1];
    this.shaderKey = ropeQShaderKey(params);
  }

  getUserCode(): string {
    return `
    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      let headDim = uniforms.outShape.z;
      let ropeDim = uniforms.freqsCisShape.y;
      let nopeDim = headDim - ropeDim;
      let column = index % headDim;
      let tokenHead = index / headDim;
      let token = tokenHead / uniforms.outShape.y;
      let source = token * uniforms.qRowStride + (tokenHead % uniforms.outShape.y) * headDim + column;
      let x = q[source];
      if (column < nopeDim) {
        result[index] = x;
        return;
      }
      let position = tokenInfo[token * 3 + 1];
      let j = column - nopeDim;
      ${ropePairWGSL(this.params.interleaved)}
      let freqsStart = position * ropeDim;
      let c = freqsCis[freqsStart + 2 * pairIndex];
      let s = freqsCis[freqsStart + 2 * pairIndex + 1];
      let partner = q[source + partnerOffset];
      result[index] = x * c + select(-partner, partner, isSecond) * s;
    }`;
  }
}
