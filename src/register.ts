import * as tf from '@tensorflow/tfjs-core';
import {fusedRopeCpuConfig} from './kernels/cpu/FusedRope.js';
import {mlaDecodeCpuConfig} from './kernels/cpu/MLADecode.js';
import {mlaPrefillCpuConfig} from './kernels/cpu/MLAPrefill.js';
import {linearCpuConfig} from './kernels/cpu/Linear.js';
import {mlaPrefillGradConfig} from './kernels/gradients.js';
import {webgpuKernelConfigs} from './kernels/webgpu/index.js';

const cpuKernelConfigs: tf.KernelConfig[] =
    [fusedRopeCpuConfig, mlaPrefillCpuConfig, mlaDecodeCpuConfig, linearCpuConfig];

/**
 * Registers MLAPrefill, MLADecode, FusedRope and MLALinear for 'cpu' and 'webgpu', and the gradient of
 * MLAPrefill (the kernel of the layer's no-cache path). Idempotent:
 * a kernel already registered under its name and backend is left as it is.
 * Importing the package root calls it.
 */
export function registerMLAKernels(): void {
  for (const config of [...cpuKernelConfigs, ...webgpuKernelConfigs]) {
    if (tf.getKernel(config.kernelName, config.backendName) === undefined) {
      tf.registerKernel(config);
    }
  }
  if (tf.getGradient(mlaPrefillGradConfig.kernelName) === undefined) {
    tf.registerGradient(mlaPrefillGradConfig);
  }
}

registerMLAKernels();
