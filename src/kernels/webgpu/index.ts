import type {KernelConfig} from '@tensorflow/tfjs-core';
import {fusedRopeWebGPUConfig} from './FusedRope.js';

/** The webgpu kernels (same names and contracts as the cpu ones). */
export const webgpuKernelConfigs: KernelConfig[] = [fusedRopeWebGPUConfig];
