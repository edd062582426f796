/**
 * MLAGatherRows' program: out[r, c] = value c of cache row slots[r], widened from 16 bits when
 * the cache stores them so. One invocation per output value.
 */
import type {CacheDtype} from '../kernel_names.js';
import type {HalfDtype} from '../../precision/half.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

export interface GatherRowsParams {
  cacheDtype: CacheDtype;
}

export function gatherRowsShaderKey(p: GatherRowsParams): string {
  return `mlaGatherRows${p.cacheDtype === 'float32' ? '' : `_${halfWGSLKey(p.cacheDtype)}`}`;
}

export class GatherRowsProgram implements WebGPUProgram {
  variableNames = ['cache', 'slots'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  uniforms = 'rowWidth : i32,';
  size = true;
  private readonly params: GatherRowsParams;

  /** `outputShape`: [rows, columns]. Uniform: rowWidth (values of a cache row). */
  constructor(params: GatherRowsParams, outputShape: number[]) {
    this.params = params;
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    const size = outputShape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / this.workgroupSize[0]), 1, 1];
    this.shaderKey = gatherRowsShaderKey(params);
  }

  getUserCode(): string {
    const half = this.params.cacheDtype !== 'float32';
    return `${half ? halfWGSL(this.params.cacheDtype as HalfDtype) : ''}
    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      let columns = uniforms.outShape.y;
      let value = slots[index / columns] * uniforms.rowWidth + index % columns;
      result[index] = ${half ? 'halfAt(cache[value / 2], (value & 1) == 1)' : 'cache[value]'};
    }`;
  }
}
