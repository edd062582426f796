/**
 * The programs of MLAPackHalf and MLAUnpackHalf: one invocation per int32 word, converting its
 * two values with the WGSL of half_wgsl.ts (the cpu reference's bits exactly).
 */
import type {HalfDtype} from '../../precision/half.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

export interface HalfConvertParams {
  dtype: HalfDtype;
  /** true: float32 → packed words; false: packed words → float32. */
  pack: boolean;
}

export function halfConvertShaderKey(p: HalfConvertParams): string {
  return `mla${p.pack ? 'Pack' : 'Unpack'}Half_${halfWGSLKey(p.dtype)}`;
}

export class HalfConvertProgram implements WebGPUProgram {
  variableNames = ['x'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  uniforms = 'numWords : i32,';
  private readonly params: HalfConvertParams;

  constructor(params: HalfConvertParams, outputShape: number[], numWords: number) {
    this.params = params;
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.dispatch = [Math.ceil(numWords / this.workgroupSize[0]), 1, 1];
    this.shaderKey = halfConvertShaderKey(params);
  }

  getUserCode(): string {
    return `${halfWGSL(this.params.dtype)}
    ${mainHeader('index')} {
      if (index >= uniforms.numWords) {
        return;
      }
      ${this.params.pack ? 'result[index] = packHalf2(x[2 * index], x[2 * index + 1]);' : `let pair = unpackHalf2(x[index]);
      result[2 * index] = pair.x;
      result[2 * index + 1] = pair.y;`}
    }`;
  }
}
