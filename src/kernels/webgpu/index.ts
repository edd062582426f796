import type {KernelConfig} from '@tensorflow/tfjs-core';
import {fusedRopeWebGPUConfig} from './FusedRope.js';
import {mlaDecodeWebGPUConfig} from './MLADecode.js';
import {mlaPrefillWebGPUConfig} from './MLAPrefill.js';
import {skinnyMatMulWebGPUConfig} from './SkinnyMatMul.js';

/** The webgpu kernels (same names and contracts as the cpu ones). */
export const webgpuKernelConfigs: KernelConfig[] = [fusedRopeWebGPUConfig, mlaDecodeWebGPUConfig,
                                                    mlaPrefillWebGPUConfig,
                                                    skinnyMatMulWebGPUConfig];
