import * as tf from '@tensorflow/tfjs-core';
import {DeepseekYarnRotaryEmbedding, fromHFConfig, KVCacheParams, LatentAttentionWithRope, PagedKVCache, RotaryEmbedding} from '../../src/index.js';
import {expectClose} from '../helpers/backends.js';
import {expectGoldenSteps, GOLDEN_CASES, GoldenCase, GoldenConfig, ropeOf, weightsOf} from '../helpers/mla_fixtures.js';

/** DeepSeek-V2-Lite's config.json (the attention part). */
function v2LiteConfig(): Record<string, unknown> {
  return {
    architectures: ['DeepseekV2ForCausalLM'], model_type: 'deepseek_v2', hidden_size: 2048,
    num_attention_heads: 16, num_key_value_heads: 16, q_lora_rank: null, kv_lora_rank: 512,
    qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128, rope_theta: 10000,
    max_position_embeddings: 163840, attention_bias: false, num_hidden_layers: 27,
    rope_scaling: {type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32,
                   beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707},
    rms_norm_eps: 1e-6,
  };
}

/** DeepSeek-V3's config.json (the attention part). */
function v3Config(): Record<string, unknown> {
  return {
    architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', hidden_size: 7168,
    num_attention_heads: 128, num_key_value_heads: 128, q_lora_rank: 1536, kv_lora_rank: 512,
    qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128, rope_theta: 10000,
    max_position_embeddings: 163840, attention_bias: false, num_hidden_layers: 61,
    rope_scaling: {type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32,
                   beta_slow: 1, mscale: 1.0, mscale_all_dim: 1.0},
    rms_norm_eps: 1e-6,
  };
}

/** A golden config written the way config.json spells it. */
function hfConfigOf(config: GoldenConfig): Record<string, unknown> {
  const s = config.ropeScaling;
  return {
    hidden_size: config.hiddenSize, num_attention_heads: config.numAttentionHeads,
    num_key_value_heads: config.numKeyValueHeads, q_lora_rank: config.qLoraRank,
    kv_lora_rank: config.kvLoraRank, qk_nope_head_dim: config.qkNopeHeadDim,
    qk_rope_head_dim: config.qkRopeHeadDim, v_head_dim: config.vHeadDim, rope_theta: config.ropeTheta,
    max_position_embeddings: config.maxPositionEmbeddings, rms_norm_eps: config.rmsNormEps,
    rope_scaling: s === null ? null : {
      type: s.type, factor: s.factor, original_max_position_embeddings: s.originalMaxPositionEmbeddings,
      beta_fast: s.betaFast, beta_slow: s.betaSlow, mscale: s.mscale, mscale_all_dim: s.mscaleAllDim,
    },
  };
}

function without(config: Record<string, unknown>, field: string): Record<string, unknown> {
  const out = {...config};
  delete out[field];
  return out;
}

describe('fromHFConfig', () => {
  it('DeepSeek-V2-Lite: YaRN rope, no q-LoRA, λ = 0.1147213868', () => {
    const {rope, args} = fromHFConfig(v2LiteConfig());
    expect(rope).toBeInstanceOf(DeepseekYarnRotaryEmbedding);
    expect(args.rope).toBe(rope);
    // HF's cos/sin multiplier g(40, 0.707) / g(40, 0.707) = 1, carried as mscale 0, mscaleAllDim 0.
    expect((rope as DeepseekYarnRotaryEmbedding).scalingParams).toEqual({
      scalingFactor: 40, originalMaxPositionEmbeddings: 4096, betaFast: 32, betaSlow: 1, mscale: 0,
      mscaleAllDim: 0});
    expect(rope.magnitude()).toBe(1);
    expect([rope.dim, rope.nHeads, rope.theta, rope.maxSeqLen, rope.interleaved]).toEqual([64, 16, 10000, 163840, true]);
    expect(args).toEqual(jasmine.objectContaining({
      numAttentionHeads: 16, numKeyValueHeads: 16, hiddenSize: 2048, qLoraRank: null, kvLoraRank: 512,
      qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128, rmsNormEps: 1e-6}));
    expect([args.kvParams.headDim, args.kvParams.pageSize, args.kvParams.numLayers]).toEqual([576, 128, 1]);
    const layer = new LatentAttentionWithRope(args);
    expect(Math.abs(layer.scale - 0.1147213868)).toBeLessThan(1e-9);
    expect(layer.expectedWeightShapes().get('q_proj.weight')).toEqual([16 * 192, 2048]);
    expect(layer.expectedWeightShapes().has('q_a_proj.weight')).toBe(false);
    layer.dispose();
  });

  it('DeepSeek-V3: q-LoRA 1536, λ = 0.1352337789', () => {
    const {rope, args} = fromHFConfig(v3Config(), {pageSize: 64, numLayers: 61});
    expect(rope).toBeInstanceOf(DeepseekYarnRotaryEmbedding);
    expect(args.qLoraRank).toBe(1536);
    expect(args.numAttentionHeads).toBe(128);
    expect([args.kvParams.headDim, args.kvParams.pageSize, args.kvParams.numLayers]).toEqual([576, 64, 61]);
    const layer = new LatentAttentionWithRope(args);
    expect(Math.abs(layer.scale - 0.1352337789)).toBeLessThan(1e-9);
    expect(layer.expectedWeightShapes().get('q_b_proj.weight')).toEqual([128 * 192, 1536]);
    layer.dispose();
  });

  it('reads rope_type, defaults and q_lora_rank 0 / missing', () => {
    const base = v2LiteConfig();
    const scaling = base.rope_scaling as Record<string, unknown>;
    const {rope} = fromHFConfig({...base, rope_scaling: {rope_type: 'deepseek_yarn', factor: 40,
                                                         original_max_position_embeddings: 4096}});
    // No mscale keys: HF's multiplier g(40, 1) (mscale 1 here) and the plain softmax scale.
    const params = (rope as DeepseekYarnRotaryEmbedding).scalingParams;
    expect(params.mscale).toBeCloseTo(1, 12);
    expect(params.mscaleAllDim).toBe(0);
    expect(rope.magnitude()).toBeCloseTo(0.1 * Math.log(40) + 1, 12);
    expect(fromHFConfig({...base, rope_scaling: {...scaling, type: undefined, rope_type: 'yarn'}}).rope)
        .toBeInstanceOf(DeepseekYarnRotaryEmbedding);
    expect(fromHFConfig({...base, q_lora_rank: 0}).args.qLoraRank).toBeNull();
    expect(fromHFConfig(without(base, 'q_lora_rank')).args.qLoraRank).toBeNull();
    const defaults = fromHFConfig(without(without(base, 'num_key_value_heads'), 'rms_norm_eps'));
    expect(defaults.args.numKeyValueHeads).toBe(16);
    expect(defaults.args.rmsNormEps).toBe(1e-6);
    // HF's q_a/kv_a norms use eps 1e-6 whatever rms_norm_eps (the decoder's norms') says.
    expect(fromHFConfig({...base, rms_norm_eps: 1e-5}).args.rmsNormEps).toBe(1e-6);
    // No rope_theta anywhere is an Error, not a silent 10000.
    expect(() => fromHFConfig(without(base, 'rope_theta'))).toThrowError(/config\.rope_theta is missing/);
    expect(fromHFConfig(base, {maxSeqLen: 4096}).rope.maxSeqLen).toBe(4096);
  });

  it('follows HF where its conventions differ from MAX\'s: mscale_all_dim, attention_factor, rope_parameters', () => {
    const base = v2LiteConfig();
    const scaling = base.rope_scaling as Record<string, unknown>;
    const g = (s: number, m: number) => 0.1 * m * Math.log(s) + 1;
    const baseScale = 1 / Math.sqrt(192);
    const check = (rope_scaling: Record<string, unknown>, softmax: number, multiplier: number) => {
      const {rope, args} = fromHFConfig({...base, rope_scaling});
      const layer = new LatentAttentionWithRope(args);
      expect(layer.scale / softmax).withContext(`softmax scale of ${JSON.stringify(rope_scaling)}`).toBeCloseTo(1, 12);
      expect(rope.magnitude() / multiplier).withContext(`cos/sin multiplier of ${JSON.stringify(rope_scaling)}`)
          .toBeCloseTo(1, 12);
      layer.dispose();
    };
    // mscale ≠ mscale_all_dim: softmax from mscale_all_dim (MAX would use mscale), cos/sin the ratio.
    check({...scaling, mscale: 1.0, mscale_all_dim: 0.5}, baseScale * g(40, 0.5) ** 2, g(40, 1) / g(40, 0.5));
    // Without mscale keys: plain softmax scale (MAX: g(40, 1)²), cos/sin g(40, 1).
    check(without(without(scaling, 'mscale'), 'mscale_all_dim'), baseScale, g(40, 1));
    // mscale_all_dim only: softmax g(40, msad)², cos/sin g(40, 1) (HF needs both for the ratio).
    check({...without(scaling, 'mscale'), mscale_all_dim: 0.707}, baseScale * g(40, 0.707) ** 2, g(40, 1));
    // attention_factor is honoured as the cos/sin multiplier.
    check({...scaling, attention_factor: 1.25}, baseScale * g(40, 0.707) ** 2, 1.25);
    // rope_parameters (HF's newer form) hold θ and the scaling together.
    const {rope} = fromHFConfig({...without(without(base, 'rope_theta'), 'rope_scaling'),
                                 rope_parameters: {rope_theta: 1.6e6, rope_type: 'default'}});
    expect(rope.theta).toBe(1.6e6);
    expect(rope).not.toBeInstanceOf(DeepseekYarnRotaryEmbedding);
    const yarn = fromHFConfig({...without(base, 'rope_scaling'),
                               rope_parameters: {...scaling, type: undefined, rope_type: 'yarn', rope_theta: 5e5}});
    expect(yarn.rope).toBeInstanceOf(DeepseekYarnRotaryEmbedding);
    expect(yarn.rope.theta).toBe(5e5);
    expect(() => fromHFConfig({...base, rope_parameters: 'yarn'}))
        .toThrowError(/config\.rope_parameters: expected null or an object/);
  });

  it('rope_scaling null: plain RotaryEmbedding, rope_interleave honoured', () => {
    const plain = fromHFConfig({...v2LiteConfig(), rope_scaling: null});
    expect(plain.rope).toBeInstanceOf(RotaryEmbedding);
    expect(plain.rope).not.toBeInstanceOf(DeepseekYarnRotaryEmbedding);
    expect(plain.rope.interleaved).toBe(true);
    const layer = new LatentAttentionWithRope(plain.args);
    expect(Math.abs(layer.scale - 1 / Math.sqrt(192))).toBeLessThan(1e-12);
    layer.dispose();
    expect(fromHFConfig({...v2LiteConfig(), rope_scaling: null, rope_interleave: false}).rope.interleaved).toBe(false);
    expect(fromHFConfig(without(v2LiteConfig(), 'rope_scaling')).rope).not.toBeInstanceOf(DeepseekYarnRotaryEmbedding);
  });

  it('uses a given kvParams, and rejects one of the wrong width', () => {
    const kvParams = new KVCacheParams({headDim: 576, pageSize: 16, numLayers: 27});
    expect(fromHFConfig(v2LiteConfig(), {kvParams}).args.kvParams).toBe(kvParams);
    expect(() => fromHFConfig(v2LiteConfig(), {kvParams: new KVCacheParams({headDim: 512})}))
        .toThrowError(/options\.kvParams\.headDim: expected kv_lora_rank \+ qk_rope_head_dim = 512 \+ 64 = 576, got 512/);
  });

  it('rejects an unknown rope_scaling type, naming it and the supported ones', () => {
    for (const type of ['linear', 'dynamic', 'llama3', 'longrope']) {
      expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: {type, factor: 4}}))
          .toThrowError(new RegExp(`config\\.rope_scaling\\.type '${type}' is not supported \\(supported: 'yarn', 'deepseek_yarn'`));
    }
    expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: {rope_type: 'dynamic', factor: 4}}))
        .toThrowError(/config\.rope_scaling\.rope_type 'dynamic' is not supported/);
    expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: {factor: 4}}))
        .toThrowError(/config\.rope_scaling\.type \(or rope_type\): expected one of 'yarn', 'deepseek_yarn', 'default', got undefined/);
    expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: 'yarn'}))
        .toThrowError(/config\.rope_scaling: expected null or an object, got "yarn"/);
  });

  it('names a missing or mistyped field', () => {
    for (const field of ['hidden_size', 'num_attention_heads', 'kv_lora_rank', 'qk_nope_head_dim',
                         'qk_rope_head_dim', 'v_head_dim', 'max_position_embeddings']) {
      expect(() => fromHFConfig(without(v2LiteConfig(), field)))
          .toThrowError(new RegExp(`^fromHFConfig: config\\.${field} is missing \\(expected an integer ≥ \\d\\)$`));
    }
    expect(() => fromHFConfig({...v2LiteConfig(), hidden_size: '2048'}))
        .toThrowError(/config\.hidden_size: expected an integer ≥ 1, got "2048"/);
    expect(() => fromHFConfig({...v2LiteConfig(), kv_lora_rank: 511.5}))
        .toThrowError(/config\.kv_lora_rank: expected an integer ≥ 1, got 511\.5/);
    expect(() => fromHFConfig({...v2LiteConfig(), q_lora_rank: -3}))
        .toThrowError(/config\.q_lora_rank: expected an integer ≥ 1, got -3/);
    expect(() => fromHFConfig({...v2LiteConfig(), qk_rope_head_dim: 63}))
        .toThrowError(/config\.qk_rope_head_dim: expected an even number, got 63/);
    expect(() => fromHFConfig({...v2LiteConfig(), rope_theta: 'big'}))
        .toThrowError(/config\.rope_theta: expected a finite number > 1, got "big"/);
    expect(() => fromHFConfig({...v2LiteConfig(), rms_norm_eps: 0}))
        .toThrowError(/config\.rms_norm_eps: expected a finite number > 0, got 0/);
    expect(() => fromHFConfig({...v2LiteConfig(), rope_interleave: 'yes'}))
        .toThrowError(/config\.rope_interleave: expected true or false, got "yes"/);
    expect(() => fromHFConfig({...v2LiteConfig(), attention_bias: true}))
        .toThrowError(/config\.attention_bias is true/);
    const scaling = v2LiteConfig().rope_scaling as Record<string, unknown>;
    for (const field of ['factor', 'original_max_position_embeddings']) {
      expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: without(scaling, field)}))
          .toThrowError(new RegExp(`config\\.rope_scaling\\.${field} is missing`));
    }
    expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: {...scaling, mscale: null}}))
        .not.toThrow();
    expect(() => fromHFConfig({...v2LiteConfig(), rope_scaling: {...scaling, beta_fast: '32'}}))
        .toThrowError(/config\.rope_scaling\.beta_fast: expected a finite number > 0, got "32"/);
    expect(() => fromHFConfig(null as unknown as object)).toThrowError(/fromHFConfig config: expected a config\.json object, got null/);
    expect(() => fromHFConfig([] as unknown as object)).toThrowError(/fromHFConfig config: expected a config\.json object/);
  });
});

async function runGoldenSteps(layer: LatentAttentionWithRope, golden: GoldenCase): Promise<void> {
  const cache = new PagedKVCache(layer.kvParams, {totalNumPages: 64});
  await expectGoldenSteps(layer, golden, cache);
  cache.dispose();
}

// Each golden config, spelled as a config.json, builds a layer that reproduces the golden outputs.
// The mapping is backend-independent (golden.spec.ts covers every backend), so cpu only.
describe('fromHFConfig golden configs [cpu]', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });
  for (const golden of GOLDEN_CASES) {
    it(`${golden.name}: config.json → layer → golden outputs`, async () => {
      const tensorsAtStart = tf.memory().numTensors;
      const {rope, args} = fromHFConfig(hfConfigOf(golden.config), {pageSize: 16});
      const reference = ropeOf(golden.config);
      expect(rope.constructor).toBe(reference.constructor);
      // The golden configs have mscale = mscale_all_dim, where HF's and MAX's conventions agree:
      // the same table (the scaling params differ in form: HF's multiplier as mscale, 0).
      expectClose(rope.freqsCisValues(), reference.freqsCisValues(), 1e-7, 'freqsCis');
      const layer = new LatentAttentionWithRope(args);
      expect(layer.scale).toBeCloseTo(golden.softmaxScale, 12);
      const weights = weightsOf(golden);
      layer.loadStateDict(weights);
      Object.values(weights).forEach((w) => w.dispose());
      await runGoldenSteps(layer, golden);
      layer.dispose();
      rope.dispose();
      reference.dispose();
      expect(tf.memory().numTensors).withContext('numTensors after dispose').toBe(tensorsAtStart);
    });
  }
});
