/**
 * The program of MLASwiGLU: one invocation per output value, reading its gate and up values
 * from the two halves of the row.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

export class SwiGLUProgram implements WebGPUProgram {
  variableNames = ['x'];
  outputShape: number[];
  shaderKey = 'mlaSwiGLU';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  /** `outputShape`: [T, I]. */
  constructor(outputShape: number[]) {
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.dispatch = [Math.ceil(outputShape[0] * outputShape[1] / this.workgroupSize[0]), 1, 1];
  }

  getUserCode(): string {
    return `
    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      let width = uniforms.outShape.y;
      let row = index / width;
      let gateAt = index + row * width;  // row · 2I + i
      let gate = x[gateAt];
      result[index] = gate / (1.0 + exp(-gate)) * x[gateAt + width];
    }`;
  }
}
