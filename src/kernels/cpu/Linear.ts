import type {KernelConfig, KernelFunc, NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {LINEAR, MLALinearAttrs} from '../kernel_names.js';
import {linearLayout} from '../layouts.js';
import {valuesOf} from './cpu_tensors.js';
import {rmsNormRow} from './reference_math.js';
import {unpackHalf} from '../../precision/half.js';

/**
 * The readable reference of MLALinear (contract in ../kernel_names.ts): y = x · wᵀ per batch
 * entry, output columns past N1 from w2, x rows RMS-normalized first when gamma is given, the
 * residual added when given.
 */
export function linearCpu(args: {
  inputs: {x: TensorInfo, w: TensorInfo, w2?: TensorInfo, gamma?: TensorInfo, residual?: TensorInfo},
  backend: MathBackendCPU,
  attrs?: MLALinearAttrs & NamedAttrMap,
}): TensorInfo {
  const {inputs, backend} = args;
  const weightDtype = args.attrs?.weightDtype ?? 'float32';
  const layout = linearLayout(inputs.x.shape, inputs.w.shape, inputs.w2?.shape ?? null,
                              Boolean(args.attrs?.tokenMajor), weightDtype);
  const {numEntries, m, k, n, splitCol} = layout;
  const x = valuesOf(backend, inputs.x);
  const w = valuesOf(backend, inputs.w);
  const w2 = inputs.w2 === undefined ? null : valuesOf(backend, inputs.w2);
  const gamma = inputs.gamma === undefined ? null : valuesOf(backend, inputs.gamma);
  const residual = inputs.residual === undefined ? null : valuesOf(backend, inputs.residual);
  const y = new Float32Array(numEntries * m * n);
  const row = new Float32Array(k);
  for (let g = 0; g < numEntries; g++) {
    for (let i = 0; i < m; i++) {
      const xStart = g * layout.xEntryStride + i * layout.xRowStride;
      if (gamma !== null) {
        rmsNormRow(x, xStart, k, gamma, args.attrs?.normEps ?? 0, row, 0);
      } else {
        row.set(x.subarray(xStart, xStart + k));
      }
      for (let j = 0; j < n; j++) {
        // Row j of [w; w2] (of entry g), widened from 16 bits when stored so.
        const [weight, rowIndex] = j < splitCol ? [w, g * splitCol + j] : [w2!, j - splitCol];
        const weightRow = weightDtype === 'float32' ? weight.subarray(rowIndex * k, (rowIndex + 1) * k) :
            unpackHalf(weight, weightDtype, k, rowIndex * k);
        let sum = 0;  // float64
        for (let l = 0; l < k; l++) sum += row[l] * weightRow[l];
        const at = g * layout.outEntryStride + i * layout.outRowStride + j;
        y[at] = residual === null ? sum : residual[at] + sum;
      }
    }
  }
  return backend.makeTensorInfo(layout.outputShape, 'float32', y);
}

export const linearCpuConfig: KernelConfig = {
  kernelName: LINEAR,
  backendName: 'cpu',
  kernelFunc: linearCpu as unknown as KernelFunc,
};
