import type {KernelConfig} from '@tensorflow/tfjs-core';

/** The webgpu kernels (same names and contracts as the cpu ones). */
export const webgpuKernelConfigs: KernelConfig[] = [];
