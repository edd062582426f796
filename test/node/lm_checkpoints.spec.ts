import {mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {bf16ToFloat, CHECKPOINT_VARIANTS, decodeSafetensors, makeCheckpoint, readCheckpointFiles,
        roundToBf16, writeCheckpoint} from '../helpers/lm_checkpoints.js';
import {referenceLogits, referenceSettings} from '../helpers/reference_lm.js';

// The checkpoints tests write themselves (test/helpers/lm_checkpoints.ts): what the files hold,
// how the configs are written, and that the float64 reference runs on every variant.

const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
const json = (bytes: Uint8Array | undefined) => JSON.parse(text(bytes)) as Record<string, unknown>;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

describe('lm_checkpoints', () => {
  it('default: a 2-layer youtu in one BF16 model.safetensors whose values are the weights map, bf16-exact', () => {
    const ckpt = makeCheckpoint();
    expect([...ckpt.files.keys()]).toEqual(['config.json', 'model.safetensors']);
    expect(json(ckpt.files.get('config.json'))).toEqual(ckpt.config);
    expect(ckpt.config.model_type).toBe('youtu');
    expect(ckpt.config.num_hidden_layers).toBe(2);
    const stored = decodeSafetensors(ckpt.files.get('model.safetensors')!);
    expect([...stored.keys()].sort()).toEqual([...ckpt.weights.keys()].sort());
    for (const [name, w] of ckpt.weights) {
      expect(stored.get(name)!.shape).withContext(name).toEqual(w.shape);
      expect(stored.get(name)!.values).withContext(name).toEqual(w.values);
      for (const v of w.values.subarray(0, 64)) expect(roundToBf16(v)).toBe(v);
    }
    // The header says BF16 and format pt, as save_pretrained writes it.
    const bytes = ckpt.files.get('model.safetensors')!;
    const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(text(bytes.subarray(8, 8 + headerLength)));
    expect(header.__metadata__).toEqual({format: 'pt'});
    expect(header['model.norm.weight'].dtype).toBe('BF16');
    expect(ckpt.totalSize).toBe(bytes.byteLength - 8 - headerLength);
  });

  it('same spec, same bytes; another seed, other weights', () => {
    const a = makeCheckpoint({seed: 5});
    const b = makeCheckpoint({seed: 5});
    const c = makeCheckpoint({seed: 6});
    expect(b.files.get('model.safetensors')).toEqual(a.files.get('model.safetensors')!);
    expect(c.weights.get('model.embed_tokens.weight')!.values)
      .not.toEqual(a.weights.get('model.embed_tokens.weight')!.values);
  });

  it('scales as the fixture: projections N(0, 1/fan_in), embedding N(0, 1), head N(0, 16/hidden), norms 1 + 0.2·N', () => {
    const ckpt = makeCheckpoint({dtype: 'F32', seed: 3});
    const stats = (name: string) => {
      const v = ckpt.weights.get(name)!.values;
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      return {mean, sd};
    };
    const close = (got: number, want: number, tol: number) => expect(Math.abs(got - want)).toBeLessThan(tol);
    close(stats('model.embed_tokens.weight').sd, 1, 0.05);
    close(stats('lm_head.weight').sd, 0.5, 0.03);
    close(stats('model.layers.0.self_attn.q_a_proj.weight').sd, 1 / 8, 0.01);          // fan_in 64
    close(stats('model.layers.0.self_attn.kv_b_proj.weight').sd, 1 / Math.sqrt(32), 0.015);
    close(stats('model.layers.1.mlp.down_proj.weight').sd, 1 / Math.sqrt(96), 0.01);
    close(stats('model.layers.0.input_layernorm.weight').mean, 1, 0.08);
    close(stats('model.layers.0.input_layernorm.weight').sd, 0.2, 0.06);
  });

  it('sharded: model-0000k-of-0000n files in state-dict order, an index with weight_map and total_size', () => {
    const ckpt = makeCheckpoint({shards: 2, seed: 7});
    expect(ckpt.weightFiles).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect([...ckpt.files.keys()].sort()).toEqual(['config.json', 'model-00001-of-00002.safetensors',
                                                   'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    const index = json(ckpt.files.get('model.safetensors.index.json')) as
      {metadata: {total_size: number}, weight_map: Record<string, string>};
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());
    expect(Object.keys(index.weight_map).sort()).toEqual([...ckpt.weights.keys()].sort());
    let dataBytes = 0;
    for (const file of ckpt.weightFiles) {
      const stored = decodeSafetensors(ckpt.files.get(file)!);
      for (const name of stored.keys()) expect(index.weight_map[name]).toBe(file);
      for (const w of stored.values()) dataBytes += 2 * w.values.length;
    }
    expect(index.metadata.total_size).toBe(dataBytes);
    expect(ckpt.totalSize).toBe(dataBytes);
    // Every weight read back through the index equals the weights map.
    const back = readCheckpointFiles(ckpt.files);
    for (const [name, w] of ckpt.weights) expect(back.get(name)!.values).withContext(name).toEqual(w.values);
    // The embedding opens shard 1 and the head closes shard 2 (state-dict order).
    expect(index.weight_map['model.embed_tokens.weight']).toBe(ckpt.weightFiles[0]);
    expect(index.weight_map['lm_head.weight']).toBe(ckpt.weightFiles[1]);
    // Three shards of an F32 checkpoint.
    const three = makeCheckpoint({shards: 3, dtype: 'F32'});
    expect(three.weightFiles.length).toBe(3);
    expect(readCheckpointFiles(three.files).get('model.norm.weight')!.values)
      .toEqual(three.weights.get('model.norm.weight')!.values);
  });

  it('youtu configs: as YoutuConfig writes them; tie_word_embeddings omitted → no lm_head.weight', () => {
    const ckpt = makeCheckpoint({modelType: 'youtu', tie: 'omit', ropeLocation: 'rope_parameters', ropeTheta: 1.6e6});
    const c = ckpt.config;
    expect(c.architectures).toEqual(['YoutuForCausalLM']);
    expect('tie_word_embeddings' in c).toBeFalse();
    expect(ckpt.weights.has('lm_head.weight')).toBeFalse();
    expect(c.head_dim).toBe(c.qk_rope_head_dim);
    expect(c.qk_head_dim).toBe((c.qk_nope_head_dim as number) + (c.qk_rope_head_dim as number));
    expect('rope_theta' in c).toBeFalse();
    expect('rope_scaling' in c).toBeFalse();
    expect(c.rope_parameters).toEqual({rope_theta: 1.6e6, rope_type: 'default'});
    expect(c.rope_interleave).toBeTrue();
    expect(referenceSettings(c).tied).toBeTrue();
    const untied = makeCheckpoint({modelType: 'youtu'});
    expect(untied.config.tie_word_embeddings).toBeFalse();
    expect(untied.config.rope_theta).toBe(10000);
    expect(untied.config.rope_scaling).toBeNull();
    expect(untied.weights.has('lm_head.weight')).toBeTrue();
  });

  it('no q-LoRA: q_proj instead of q_a_proj / q_a_layernorm / q_b_proj, q_lora_rank null', () => {
    const ckpt = makeCheckpoint({qLoraRank: null});
    expect(ckpt.config.q_lora_rank).toBeNull();
    expect(ckpt.weights.get('model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([4 * 24, 64]);
    expect([...ckpt.weights.keys()].some((k) => k.includes('q_a_') || k.includes('q_b_'))).toBeFalse();
  });

  it('deepseek configs as DeepSeek writes them: dense by n_routed_experts null or first_k_dense_replace; YaRN rope_scaling with type', () => {
    const nullExperts = makeCheckpoint({modelType: 'deepseek_v3', mlp: 'null-experts',
                                        yarn: {factor: 4, mscale: 0.8, mscaleAllDim: 0.5}});
    const c = nullExperts.config;
    expect(c.architectures).toEqual(['DeepseekV3ForCausalLM']);
    expect(c.n_routed_experts).toBeNull();
    expect(c.moe_intermediate_size).toBeDefined();
    expect(c.rope_theta).toBe(10000);
    expect(c.rope_scaling).toEqual({beta_fast: 32, beta_slow: 1, factor: 4, mscale: 0.8, mscale_all_dim: 0.5,
                                    original_max_position_embeddings: 64, type: 'yarn'});
    expect(c.rope_interleave).toBeTrue();
    expect(c.tie_word_embeddings).toBeFalse();
    expect(referenceSettings(c).moeLayers).toEqual([]);

    const firstK = makeCheckpoint({modelType: 'deepseek_v2', mlp: 'first-k', qLoraRank: null});
    expect(firstK.config.architectures).toEqual(['DeepseekV2ForCausalLM']);
    expect(firstK.config.n_routed_experts).toBe(4);
    expect(firstK.config.first_k_dense_replace).toBe(2);
    expect('rope_interleave' in firstK.config).toBeFalse();   // DeepSeek-V2's configs have none
    expect(referenceSettings(firstK.config).moeLayers).toEqual([]);
    expect([...firstK.weights.keys()].some((k) => k.includes('experts'))).toBeFalse();

    const yarnV5 = makeCheckpoint({modelType: 'deepseek_v3', ropeLocation: 'rope_parameters', yarn: {factor: 8}});
    expect('rope_theta' in yarnV5.config).toBeFalse();
    expect(yarnV5.config.rope_parameters).toEqual({rope_theta: 10000, rope_type: 'yarn', beta_fast: 32, beta_slow: 1,
                                                   factor: 8, original_max_position_embeddings: 32});
  });

  it('MoE: layer 1 routed, with experts, gate (+ e_score_correction_bias on V3) and shared experts; the reference refuses it', () => {
    const ckpt = makeCheckpoint(CHECKPOINT_VARIANTS.deepseekV3Moe);
    expect(ckpt.config.n_routed_experts).toBe(4);
    expect(ckpt.config.first_k_dense_replace).toBe(1);
    expect(ckpt.weights.has('model.layers.0.mlp.gate_proj.weight')).toBeTrue();
    expect(ckpt.weights.has('model.layers.1.mlp.gate_proj.weight')).toBeFalse();
    expect(ckpt.weights.get('model.layers.1.mlp.experts.3.down_proj.weight')!.shape).toEqual([64, 32]);
    expect(ckpt.weights.get('model.layers.1.mlp.gate.weight')!.shape).toEqual([4, 64]);
    expect(ckpt.weights.has('model.layers.1.mlp.gate.e_score_correction_bias')).toBeTrue();
    expect(ckpt.weights.has('model.layers.1.mlp.shared_experts.up_proj.weight')).toBeTrue();
    expect(referenceSettings(ckpt.config).moeLayers).toEqual([1]);
    expect(() => referenceLogits(ckpt.config, ckpt.weights, [1, 2, 3])).toThrowError(/routed/);
  });

  it('every CHECKPOINT_VARIANT: the reference runs, logits finite and of a few units', () => {
    for (const [name, spec] of Object.entries(CHECKPOINT_VARIANTS)) {
      const ckpt = makeCheckpoint(spec);
      if (spec.mlp === 'moe') continue;
      const ids = [1, 17, 42, 99, 7, 123, 200, 5];
      const logits = referenceLogits(ckpt.config, ckpt.weights, ids);
      expect(logits.length).withContext(name).toBe(ids.length * (ckpt.config.vocab_size as number));
      expect(logits.every(Number.isFinite)).withContext(name).toBeTrue();
      expect(maxAbs(logits)).withContext(name).toBeGreaterThan(2);
      expect(maxAbs(logits)).withContext(name).toBeLessThan(60);
    }
  });

  it('the rope forms are equivalent: top-level rope_theta/rope_scaling and rope_parameters give equal logits', () => {
    const ids = [1, 9, 8, 7, 6, 5, 4, 3, 2, 200];
    for (const yarn of [null, {factor: 4, mscale: 0.8, mscaleAllDim: 0.5}]) {
      const a = makeCheckpoint({modelType: 'deepseek_v3', seed: 31, yarn});
      const b = makeCheckpoint({modelType: 'deepseek_v3', seed: 31, yarn, ropeLocation: 'rope_parameters'});
      const c = makeCheckpoint({modelType: 'deepseek_v3', seed: 31, yarn, ropeTypeKey: 'rope_type'});
      const la = referenceLogits(a.config, a.weights, ids);
      expect(Array.from(referenceLogits(b.config, b.weights, ids))).toEqual(Array.from(la));
      expect(Array.from(referenceLogits(c.config, c.weights, ids))).toEqual(Array.from(la));
    }
    // YaRN changes the logits (after position 0) relative to the plain rope.
    const plain = makeCheckpoint({modelType: 'deepseek_v3', seed: 31});
    const scaled = makeCheckpoint({modelType: 'deepseek_v3', seed: 31, yarn: {factor: 4, mscale: 0.8, mscaleAllDim: 0.5}});
    const ls = referenceLogits(scaled.config, scaled.weights, ids);
    const d = referenceLogits(plain.config, plain.weights, ids).map((v, i) => v - ls[i]);
    expect(maxAbs(d)).toBeGreaterThan(0.05);
  });

  it('bf16 rounding is nearest-even', () => {
    expect(roundToBf16(1 + 2 ** -8)).toBe(1);                 // tie → even (1.0)
    expect(roundToBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);    // tie → even (…10)
    expect(roundToBf16(1 + 2 ** -8 + 2 ** -20)).toBe(1 + 2 ** -7);
    expect(roundToBf16(-3.140625)).toBe(-3.140625);
    expect(bf16ToFloat(0x3f80)).toBe(1);
    expect(bf16ToFloat(0xc000)).toBe(-2);
  });

  it('writeCheckpoint writes every file into a folder', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tfjs-mla-ckpt-'));
    try {
      const ckpt = makeCheckpoint({shards: 2});
      await writeCheckpoint(path.join(dir, 'model'), ckpt);
      expect(readdirSync(path.join(dir, 'model')).sort()).toEqual([...ckpt.files.keys()].sort());
      for (const [name, bytes] of ckpt.files) {
        expect(new Uint8Array(readFileSync(path.join(dir, 'model', name)))).withContext(name).toEqual(bytes);
      }
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });
});
