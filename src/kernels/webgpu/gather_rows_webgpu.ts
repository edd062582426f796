/**
 * MLAGatherRows' program: out[r, c] = value c of cache row slots[r], widened from 16 bits when
 * the cache stores them so. One invocation per output value.
 */
import type {CacheDtype} from '../kernel_names.js';
import type {HalfDtype} from '../../precision/half.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';
import {fp8WGSL, fp8WGSLKey} from './fp8_wgsl.js';
import type {Fp8RowLayout} from '../../precision/fp8.js';
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

export interface GatherRowsParams {
  cacheDtype: CacheDtype;
  /** The FP8 row layout (null unless cacheDtype is float8_e4m3fn). */
  fp8: Fp8RowLayout|null;
}

export function gatherRowsShaderKey(p: GatherRowsParams): string {
  return `mlaGatherRows${p.fp8 !== null ? `_${fp8WGSLKey(p.fp8)}` :
                         p.cacheDtype === 'float32' ? '' : `_${halfWGSLKey(p.cacheDtype as HalfDtype)}`}`;
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
    const fp8 = this.params.fp8;
    const half = fp8 === null && this.params.cacheDtype !== 'float32';
    return `${half ? halfWGSL(this.params.cacheDtype as HalfDtype) : fp8 !== null ? fp8WGSL(fp8) : ''}
    ${mainHeader('index')} {
      if (index >= uniforms.size) {
        return;
      }
      let columns = uniforms.outShape.y;
      let value = slots[index / columns] * uniforms.rowWidth + index % columns;
      result[index] = ${fp8 !== null ? 'fp8CacheValue(slots[index / columns], index % columns)' :
                        half ? 'halfAt(cache[value / 2], (value & 1) == 1)' : 'cache[value]'};
    }`;
  }
}
