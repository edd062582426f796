export {registerMLAKernels} from './register';
export * from './kernels/kernel_names';
export {fusedRope, mlaDecode, mlaPrefill, mergeAttentionPartials} from './ops/mla_ops';
export * from './rope/rotary_embedding';
export * from './cache/kv_cache_params';
export * from './cache/paged_kv_cache';
