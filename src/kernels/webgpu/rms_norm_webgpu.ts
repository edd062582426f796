/**
 * The program of MLARMSNorm: one workgroup per row. Its invocations sum the squares of a
 * strided share of the row, a tree in workgroup memory adds the shares, and each invocation
 * then writes its share scaled by the row's 1 / RMS and gamma.
 */
import {WORKGROUP_INDEX_WGSL, WebGPUProgram} from './webgpu_util.js';

export interface RMSNormParams {
  /** WG: invocations per workgroup (a power of two). */
  workgroupSize: number;
}

export const RMS_NORM_PARAMS: Readonly<RMSNormParams> = {workgroupSize: 64};

export function rmsNormShaderKey(p: RMSNormParams): string {
  return `mlaRmsNorm_WG${p.workgroupSize}`;
}

export class RMSNormProgram implements WebGPUProgram {
  variableNames = ['x', 'gamma'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[], y: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = 'eps : f32,';
  readonly params: RMSNormParams;

  /** `outputShape`: [T, D]. */
  constructor(params: RMSNormParams, outputShape: number[]) {
    this.params = params;
    this.outputShape = outputShape;
    this.dispatchLayout = {x: [0], y: [1]};  // not flat: the shader's main() takes no index
    this.workgroupSize = [params.workgroupSize, 1, 1];
    this.dispatch = [outputShape[0], 1, 1];
    this.shaderKey = rmsNormShaderKey(params);
  }

  getUserCode(): string {
    const WG = this.params.workgroupSize;
    return `
    var<workgroup> shares : array<f32, ${WG}>;

    fn main() {
      let row = ${WORKGROUP_INDEX_WGSL};
      let lane = i32(localId.x);
      let width = uniforms.outShape.y;
      let start = row * width;
      var sumSquares = 0.0;
      for (var d = lane; d < width; d += ${WG}) {
        let v = x[start + d];
        sumSquares += v * v;
      }
      shares[lane] = sumSquares;
      workgroupBarrier();
      for (var half = ${WG / 2}; half > 0; half /= 2) {
        if (lane < half) {
          shares[lane] += shares[lane + half];
        }
        workgroupBarrier();
      }
      let inverseRms = inverseSqrt(shares[0] / f32(width) + uniforms.eps);
      for (var d = lane; d < width; d += ${WG}) {
        result[start + d] = x[start + d] * inverseRms * gamma[d];
      }
    }`;
  }
}
