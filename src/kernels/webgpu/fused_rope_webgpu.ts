/**
 * The two programs of the webgpu FusedRope kernel (contract in ../kernel_names.ts):
 * RopeCacheWriteProgram writes `[RMSNorm(c_kv) | rope(k_pe)]` into the cache in place, and
 * RopeQProgram produces q with its rope columns rotated.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

/** WGSL: the pair of a rope column `j` (0 ≤ j < R) and whether `j` is the pair's second. */
function ropePairSnippet(interleaved: boolean): string {
  // Sets `pairIndex` (i, the frequency index), `isSecond` and `partnerOffset` (partner − j).
  return interleaved ? `
      let pairIndex = j / 2;
      let isSecond = (j & 1) == 1;
      let partnerOffset = select(1, -1, isSecond);` :
                       `
      let halfDim = ropeDim / 2;
      let isSecond = j >= halfDim;
      let pairIndex = select(j, j - halfDim, isSecond);
      let partnerOffset = select(halfDim, -halfDim, isSecond);`;
}

/**
 * One workgroup per token: RMSNorm of the token's c_kv (a tree reduction of the squares in
 * workgroup memory) and the rope of its k_pe, written into cache row `slot` — the output is
 * the cache tensor itself, passed to runWebGPUProgram as `output`.
 * Inputs: kv [T, L+R], gamma [L], freqsCis [maxSeqLen, R], tokenInfo [T, 3]. Uniform: eps.
 */
export class RopeCacheWriteProgram implements WebGPUProgram {
  variableNames = ['kv', 'gamma', 'freqsCis', 'tokenInfo'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = 'eps : f32,';
  private readonly interleaved: boolean;

  /** `cacheShape`: [pages, pageSize, L+R]; `numTokens`: T (one workgroup each). */
  constructor(cacheShape: number[], numTokens: number, interleaved: boolean) {
    this.outputShape = cacheShape;
    this.dispatchLayout = flatLayout(cacheShape.length);
    this.workgroupSize = [64, 1, 1];
    this.dispatch = [numTokens, 1, 1];
    this.interleaved = interleaved;
    this.shaderKey = `mlaRopeCacheWrite_${interleaved ? 'il' : 'half'}`;
  }

  getUserCode(): string {
    const wg = this.workgroupSize[0];
    return `
    var<workgroup> sumSquares : array<f32, ${wg}>;
    ${mainHeader('index')} {
      // A dispatch wider than 65535 workgroups is folded into y/z with spare workgroups at
      // the end: they read token T − 1 but write nothing (a clamped write could hit a row).
      let numTokens = uniforms.kvShape.x;
      let valid = index / ${wg} < numTokens;
      let token = min(index / ${wg}, numTokens - 1);
      let lane = i32(localIndex);
      let latentDim = uniforms.gammaShape;
      let ropeDim = uniforms.freqsCisShape.y;
      let rowWidth = uniforms.kvShape.y;
      let kvStart = token * rowWidth;
      let position = tokenInfo[token * 3 + 1];
      let rowStart = tokenInfo[token * 3 + 2] * rowWidth;

      var partial = 0.0;
      for (var i = lane; i < latentDim; i += ${wg}) {
        let x = kv[kvStart + i];
        partial += x * x;
      }
      sumSquares[lane] = partial;
      workgroupBarrier();
      for (var stride = ${wg / 2}; stride > 0; stride >>= 1) {
        if (lane < stride) {
          sumSquares[lane] += sumSquares[lane + stride];
        }
        workgroupBarrier();
      }
      if (!valid) {
        return;
      }
      let inverseRms = 1.0 / sqrt(sumSquares[0] / f32(latentDim) + uniforms.eps);
      for (var i = lane; i < latentDim; i += ${wg}) {
        result[rowStart + i] = kv[kvStart + i] * inverseRms * gamma[i];
      }

      let freqsStart = position * ropeDim;
      for (var j = lane; j < ropeDim; j += ${wg}) {
        ${ropePairSnippet(this.interleaved)}
        let c = freqsCis[freqsStart + 2 * pairIndex];
        let s = freqsCis[freqsStart + 2 * pairIndex + 1];
        let x = kv[kvStart + latentDim + j];
        let partner = kv[kvStart + latentDim + j + partnerOffset];
        // First of a pair: x·c − partner·s; second: partner·s + x·c.
        result[rowStart + latentDim + j] = x * c + select(-partner, partner, isSecond) * s;
      }
    }`;
  }
}

/**
 * One invocation per element of q [T, H, N+R]: copies the nope columns and rotates the rope
 * columns at the token's position. Inputs: q, freqsCis [maxSeqLen, R], tokenInfo [T, 3].
 */
export class RopeQProgram implements WebGPUProgram {
  variableNames = ['q', 'freqsCis', 'tokenInfo'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size = true;
  private readonly interleaved: boolean;

  constructor(qShape: number[], interleaved: boolean) {
    this.outputShape = qShape;
    this.dispatchLayout = flatLayout(qShape.length);
    this.workgroupSize = [64, 1, 1];
    const size = qShape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / this.workgroupSize[0]), 1, 1];
    this.interleaved = interleaved;
    this.shaderKey = `mlaRopeQ_${interleaved ? 'il' : 'half'}`;
  }

  getUserCode(): string {
    return `
    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      let headDim = uniforms.qShape.z;
      let ropeDim = uniforms.freqsCisShape.y;
      let nopeDim = headDim - ropeDim;
      let column = index % headDim;
      let x = q[index];
      if (column < nopeDim) {
        result[index] = x;
        return;
      }
      let token = index / (uniforms.qShape.y * headDim);
      let position = tokenInfo[token * 3 + 1];
      let j = column - nopeDim;
      ${ropePairSnippet(this.interleaved)}
      let freqsStart = position * ropeDim;
      let c = freqsCis[freqsStart + 2 * pairIndex];
      let s = freqsCis[freqsStart + 2 * pairIndex + 1];
      let partner = q[index + partnerOffset];
      result[index] = x * c + select(-partner, partner, isSecond) * s;
    }`;
  }
}
