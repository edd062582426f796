/**
 * Pass 2 of the webgpu MLADecode: merges the per-split partials [T, S, H, L + 2]
 * (unnormalized o_lat | m | l, in base 2) of MLADecodeSplitProgram by log-sum-exp:
 * o = Σ_s 2^(m_s − M)·o_s / Σ_s 2^(m_s − M)·l_s with M = max_s m_s. Only the splits that
 * hold keys of the token (s < ceil((p + 1) / chunk)) are read. One invocation per output
 * element; every size is a shape or a uniform, so the params hold the workgroup size only.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

/** What the reduce program's shader depends on. */
export interface MLADecodeReduceParams {
  /** WG: invocations per workgroup. */
  workgroupSize: number;
}

/** The params MLADecode runs the reduce with. */
export const MLA_DECODE_REDUCE_PARAMS: Readonly<MLADecodeReduceParams> = {workgroupSize: 64};

export function mlaDecodeReduceShaderKey(p: MLADecodeReduceParams): string {
  return `mlaDecodeReduce_WG${p.workgroupSize}`;
}

export class MLADecodeReduceProgram implements WebGPUProgram {
  variableNames = ['partials', 'tokenInfo'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = 'chunk : i32,';
  size = true;
  readonly params: MLADecodeReduceParams;

  /** `outputShape`: [T, H, L]. */
  constructor(params: MLADecodeReduceParams, outputShape: number[]) {
    this.params = params;
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.workgroupSize = [params.workgroupSize, 1, 1];
    const size = outputShape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / params.workgroupSize), 1, 1];
    this.shaderKey = mlaDecodeReduceShaderKey(params);
  }

  getUserCode(): string {
    return `
    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      let latentDim = uniforms.outShape.z;
      let numHeads = uniforms.outShape.y;
      let numSplits = uniforms.partialsShape.y;
      let partialWidth = uniforms.partialsShape.w;
      let col = index % latentDim;
      let tokenHead = index / latentDim;
      let head = tokenHead % numHeads;
      let token = tokenHead / numHeads;
      let position = tokenInfo[token * 3 + 1];
      // Splits with keys: the last split also holds every key past its chunk.
      let usedSplits = min(numSplits, (position + uniforms.chunk) / uniforms.chunk);
      var maxLog2 = -3.0e38;
      for (var s = 0; s < usedSplits; s++) {
        let row = ((token * numSplits + s) * numHeads + head) * partialWidth;
        maxLog2 = max(maxLog2, partials[row + latentDim]);
      }
      var numerator = 0.0;
      var denominator = 0.0;
      for (var s = 0; s < usedSplits; s++) {
        let row = ((token * numSplits + s) * numHeads + head) * partialWidth;
        let weight = exp2(partials[row + latentDim] - maxLog2);
        numerator += weight * partials[row + col];
        denominator += weight * partials[row + latentDim + 1];
      }
      // No key (a position < 0 in tokenInfo) gives 0, never 0 / 0.
      result[index] = select(0.0, numerator / denominator, denominator > 0.0);
    }`;
  }
}
