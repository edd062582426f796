import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import {LINEAR, MLALinearAttrs} from '../kernel_names.js';
import {linearLayout} from '../layouts.js';
import {defaultColsPerInvocation, LinearProgram, linearVectorWidth, MAX_ROWS_PER_INVOCATION} from './linear_webgpu.js';
import {WebGPUBackend} from './webgpu_util.js';

/**
 * The webgpu MLALinear (contract in ../kernel_names.ts): one LinearProgram dispatch (a new
 * program object per call: tfjs rewrites its shaderKey). Host-side it reads shapes only.
 */
export function linearWebGPU(args: {
  inputs: {x: TensorInfo, w: TensorInfo, w2?: TensorInfo, gamma?: TensorInfo, residual?: TensorInfo},
  backend: WebGPUBackend,
  attrs?: MLALinearAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend} = args;
  const {x, w, w2, gamma, residual} = inputs;
  const weightDtype = args.attrs?.weightDtype ?? 'float32';
  const layout = linearLayout(x.shape, w.shape, w2?.shape ?? null, Boolean(args.attrs?.tokenMajor), weightDtype);
  const {m, k, n, numEntries} = layout;
  if (numEntries === 0 || m === 0 || n === 0) {
    return backend.makeTensorInfo(layout.outputShape, 'float32', new Float32Array(0));
  }
  if (k === 0) {
    // An empty product: the residual itself (shared, as tfjs's Identity does), or zeros.
    if (residual !== undefined) {
      backend.incRef(residual.dataId);
      return {dataId: residual.dataId, shape: layout.outputShape, dtype: 'float32'};
    }
    return backend.makeTensorInfo(layout.outputShape, 'float32', new Float32Array(numEntries * m * n));
  }
  const program = new LinearProgram({
    rowsPerInvocation: Math.min(m, MAX_ROWS_PER_INVOCATION),
    colsPerInvocation: defaultColsPerInvocation(m, w2 === undefined ? null : layout.splitCol),
    workgroupSize: 16,
    vectorWidth: linearVectorWidth(layout),
    secondWeight: w2 !== undefined,
    rmsNorm: gamma !== undefined,
    residual: residual !== undefined,
    ropeTail: null,
    weightDtype,
  }, {...layout, eps: args.attrs?.normEps ?? 0, tail: null}, layout.outputShape);
  const programInputs = [x, w, ...(w2 !== undefined ? [w2] : []), ...(gamma !== undefined ? [gamma] : []),
                         ...(residual !== undefined ? [residual] : [])];
  return backend.runWebGPUProgram(program, programInputs, 'float32', program.uniformValues());
}

export const linearWebGPUConfig: KernelConfig = {
  kernelName: LINEAR,
  backendName: 'webgpu',
  kernelFunc: linearWebGPU as unknown as KernelFunc,
};
