import type {KernelConfig} from '@tensorflow/tfjs-core';
import {fusedRopeWebGPUConfig} from './FusedRope.js';
import {mlaDecodeWebGPUConfig} from './MLADecode.js';
import {mlaPrefillWebGPUConfig} from './MLAPrefill.js';
import {linearWebGPUConfig} from './Linear.js';
import {gatherRowsWebGPUConfig} from './GatherRows.js';
import {packHalfWebGPUConfig, unpackHalfWebGPUConfig} from './HalfConvert.js';
import {rmsNormWebGPUConfig} from './RMSNorm.js';
import {swiGluWebGPUConfig} from './SwiGLU.js';

/** The webgpu kernels (same names and contracts as the cpu ones). */
export const webgpuKernelConfigs: KernelConfig[] = [fusedRopeWebGPUConfig, mlaDecodeWebGPUConfig,
                                                    mlaPrefillWebGPUConfig,
                                                    linearWebGPUConfig, gatherRowsWebGPUConfig,
                                                    packHalfWebGPUConfig, unpackHalfWebGPUConfig,
                                                    rmsNormWebGPUConfig, swiGluWebGPUConfig];
