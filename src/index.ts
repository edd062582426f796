export {registerMLAKernels} from './register.js';
export * from './kernels/kernel_names.js';
export {fusedRope, mlaDecode, mlaPrefill, mergeAttentionPartials} from './ops/mla_ops.js';
export * from './rope/rotary_embedding.js';
export * from './cache/kv_cache_params.js';
export * from './cache/paged_kv_cache.js';
export * from './layers/latent_attention_with_rope.js';
export * from './layers/prefill_metadata.js';
export * from './layers/sharding.js';
