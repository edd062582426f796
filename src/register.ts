import * as tf from '@tensorflow/tfjs-core';
import {fusedRopeCpuConfig} from './kernels/cpu/FusedRope.js';
import {mlaDecodeCpuConfig} from './kernels/cpu/MLADecode.js';
import {mlaPrefillCpuConfig} from './kernels/cpu/MLAPrefill.js';
import {linearCpuConfig} from './kernels/cpu/Linear.js';
import {gatherRowsCpuConfig} from './kernels/cpu/GatherRows.js';
import {packHalfCpuConfig, unpackHalfCpuConfig} from './kernels/cpu/HalfConvert.js';
import {rmsNormCpuConfig} from './kernels/cpu/RMSNorm.js';
import {swiGluCpuConfig} from './kernels/cpu/SwiGLU.js';
import {mlaLinearGradConfig, mlaPrefillGradConfig} from './kernels/gradients.js';
import {webgpuKernelConfigs} from './kernels/webgpu/index.js';

const cpuKernelConfigs: tf.KernelConfig[] =
    [fusedRopeCpuConfig, mlaPrefillCpuConfig, mlaDecodeCpuConfig, linearCpuConfig, gatherRowsCpuConfig,
     packHalfCpuConfig, unpackHalfCpuConfig, rmsNormCpuConfig, swiGluCpuConfig];

/**
 * Registers MLAPrefill, MLADecode, FusedRope, MLALinear, MLAGatherRows, MLAPackHalf,
 * MLAUnpackHalf, MLARMSNorm and MLASwiGLU for 'cpu' and 'webgpu', the gradient of MLAPrefill
 * (the kernel of the layer's no-cache path) and MLALinear's (an Error: 16-bit layers are inference-only). Idempotent:
 * a kernel already registered under its name and backend is left as it is.
 * Importing the package root calls it.
 */
export function registerMLAKernels(): void {
  for (const config of [...cpuKernelConfigs, ...webgpuKernelConfigs]) {
    if (tf.getKernel(config.kernelName, config.backendName) === undefined) {
      tf.registerKernel(config);
    }
  }
  for (const gradient of [mlaPrefillGradConfig, mlaLinearGradConfig]) {
    if (tf.getGradient(gradient.kernelName) === undefined) tf.registerGradient(gradient);
  }
}

registerMLAKernels();
