import {readFileSync} from 'node:fs';
import path from 'node:path';
import {decodeSafetensors, StoredWeight} from '../helpers/lm_checkpoints.js';
import {argmaxRow, referenceGreedy, referenceLogits, referenceSettings, yarnGetMscale} from '../helpers/reference_lm.js';

// The float64 reference causal LM (test/helpers/reference_lm.ts, written from HF transformers'
// eager YoutuForCausalLM / DeepseekV3ForCausalLM) against test/fixtures/tiny_mla_lm, whose
// logits and greedy tokens come from DeepSeek's own inference/model.py in float64: the
// reference must reproduce them before it may judge checkpoints the fixture does not cover.

const FIXTURE = path.resolve('test/fixtures/tiny_mla_lm');

interface Expected {
  prompts: number[][];
  logits: number[][];
  greedy: number[][];
  greedyLogits: number[][];
}

function readFixture(): {config: Record<string, unknown>, weights: Map<string, StoredWeight>, expected: Expected} {
  const config = JSON.parse(readFileSync(path.join(FIXTURE, 'config.json'), 'utf8')) as Record<string, unknown>;
  const index = JSON.parse(readFileSync(path.join(FIXTURE, 'model.safetensors.index.json'), 'utf8')) as
    {weight_map: Record<string, string>};
  const weights = new Map<string, StoredWeight>();
  for (const file of new Set(Object.values(index.weight_map))) {
    for (const [name, w] of decodeSafetensors(new Uint8Array(readFileSync(path.join(FIXTURE, file))))) {
      weights.set(name, w);
    }
  }
  const expected = JSON.parse(readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8')) as Expected;
  return {config, weights, expected};
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('reference LM (float64, HF semantics) vs tiny_mla_lm', () => {
  const {config, weights, expected} = readFixture();
  const vocab = config.vocab_size as number;

  it('reads the fixture: 3 layers, q-LoRA, untied, every tensor of the index', () => {
    const index = JSON.parse(readFileSync(path.join(FIXTURE, 'model.safetensors.index.json'), 'utf8')) as
      {weight_map: Record<string, string>};
    expect(weights.size).toBe(3 * 12 + 3);
    expect([...weights.keys()].sort()).toEqual(Object.keys(index.weight_map).sort());
    expect(weights.has('lm_head.weight')).toBeTrue();
    const s = referenceSettings(config);
    expect(s.qLoraRank).toBe(48);
    expect(s.tied).toBeFalse();
    expect(s.interleave).toBeTrue();
    expect(s.ropeType).toBe('default');
    expect(s.softmaxScale).toBe(24 ** -0.5);
    expect(s.attentionFactor).toBe(1);
  });

  it('reproduces the logits of every prompt position within 1e-5·max(1, max|logit|)', () => {
    const deviations: number[] = [];
    for (const [p, prompt] of expected.prompts.entries()) {
      const logits = referenceLogits(config, weights, prompt);
      expect(logits.length).toBe(prompt.length * vocab);
      const scale = Math.max(1, maxAbs(expected.logits[p]));
      const diff = maxAbsDiff(logits, expected.logits[p]);
      deviations.push(diff / scale);
      expect(diff).toBeLessThan(1e-5 * scale);
    }
    // The stored logits are float32-rounded float64: ~1e-7 relative is the floor.
    console.log(`[reference_lm] max|Δlogit| / max(1, max|logit|) per prompt: ${deviations.map((d) => d.toExponential(2)).join(', ')}`);
  });

  it('greedy continuation by full recomputation reproduces the 12 greedy tokens and their logits', () => {
    for (const [p, prompt] of expected.prompts.entries()) {
      const {tokens, logits} = referenceGreedy(config, weights, prompt, expected.greedy[p].length);
      expect(tokens).toEqual(expected.greedy[p]);
      const scale = Math.max(1, maxAbs(expected.logits[p]), maxAbs(expected.greedyLogits[p]));
      let worst = 0;
      for (const [k, row] of logits.entries()) {
        const want = expected.greedyLogits[p].slice(k * vocab, (k + 1) * vocab);
        const diff = maxAbsDiff(row, want);
        worst = Math.max(worst, diff / scale);
        expect(diff).toBeLessThan(1e-5 * scale);
        expect(argmaxRow(row, vocab, 0)).toBe(expected.greedy[p][k]);
      }
      console.log(`[reference_lm] prompt ${p}: greedy steps max|Δlogit| / S = ${worst.toExponential(2)}`);
    }
  });

  it('rope_interleave false (halves) changes the logits by a lot (README: 0.42 relative)', () => {
    const halves = {...config, rope_interleave: false};
    expect(referenceSettings(halves).interleave).toBeFalse();
    let worst = 0;
    for (const [p, prompt] of expected.prompts.entries()) {
      const seq = [...prompt, ...expected.greedy[p].slice(0, -1)];  // rows: the prompt's, then greedy steps 1..11
      const logits = referenceLogits(halves, weights, seq);
      const want = [...expected.logits[p], ...expected.greedyLogits[p].slice(vocab)];
      const scale = Math.max(1, maxAbs(want));
      worst = Math.max(worst, maxAbsDiff(logits, want) / scale);
      // The first position is at p = 0, where the rope is the identity: both layouts agree there.
      expect(maxAbsDiff(logits.slice(0, vocab), want.slice(0, vocab))).toBeLessThan(1e-5 * scale);
    }
    console.log(`[reference_lm] rope_interleave false: max|Δlogit| / max(1, max|logit|) = ${worst.toFixed(3)}`);
    expect(worst).toBeGreaterThan(0.3);
  });

  it('the same scores with the rope dims permuted to halves and rope_interleave false', () => {
    // HF's interleave is "permute the pairs to halves, then rotate_half": permuting the rope
    // rows of q_b_proj (per head) and kv_a_proj_with_mqa the same way and reading halves must
    // give the interleaved model's logits.
    const N = config.qk_nope_head_dim as number;
    const R = config.qk_rope_head_dim as number;
    const L = config.kv_lora_rank as number;
    const permuted = new Map(weights);
    const permuteRows = (name: string, rowOf: (r: number) => number) => {
      const w = weights.get(name)!;
      const [rows, cols] = w.shape;
      const out = new Float32Array(w.values.length);
      for (let r = 0; r < rows; r++) out.set(w.values.subarray(rowOf(r) * cols, (rowOf(r) + 1) * cols), r * cols);
      permuted.set(name, {shape: w.shape, values: out});
    };
    // new rope row j takes old row 2j (j < R/2) or 2(j − R/2) + 1.
    const ropeSource = (j: number) => (j < R / 2 ? 2 * j : 2 * (j - R / 2) + 1);
    for (let l = 0; l < (config.num_hidden_layers as number); l++) {
      permuteRows(`model.layers.${l}.self_attn.q_b_proj.weight`, (r) => {
        const h = Math.floor(r / (N + R));
        const j = r % (N + R);
        return j < N ? r : h * (N + R) + N + ropeSource(j - N);
      });
      permuteRows(`model.layers.${l}.self_attn.kv_a_proj_with_mqa.weight`, (r) => (r < L ? r : L + ropeSource(r - L)));
    }
    const logits = referenceLogits({...config, rope_interleave: false}, permuted, expected.prompts[0]);
    expect(maxAbsDiff(logits, expected.logits[0])).toBeLessThan(1e-5 * Math.max(1, maxAbs(expected.logits[0])));
  });

  it('rope_theta inside rope_parameters (no top-level key) gives the same logits; no rope_theta anywhere is an Error', () => {
    const {rope_theta: theta, rope_scaling: _scaling, ...rest} = config;
    const v5 = {...rest, rope_parameters: {rope_theta: theta, rope_type: 'default'}};
    const prompt = expected.prompts[0];
    expect(maxAbsDiff(referenceLogits(v5, weights, prompt), referenceLogits(config, weights, prompt))).toBe(0);
    expect(() => referenceSettings(rest)).toThrowError(/rope_theta/);
  });

  it('tied: without lm_head.weight and tie_word_embeddings true the head is embed_tokens', () => {
    const tiedWeights = new Map(weights);
    tiedWeights.delete('lm_head.weight');
    const prompt = expected.prompts[0].slice(0, 3);
    expect(() => referenceLogits(config, tiedWeights, prompt)).toThrowError(/lm_head\.weight/);
    const {tie_word_embeddings: _tie, ...noTieKey} = config;  // YoutuConfig's default: tied
    const tied = referenceLogits(noTieKey, tiedWeights, prompt);
    const withEmbedAsHead = new Map(weights);
    withEmbedAsHead.set('lm_head.weight', weights.get('model.embed_tokens.weight')!);
    expect(maxAbsDiff(tied, referenceLogits(config, withEmbedAsHead, prompt))).toBe(0);
  });
});

describe('reference LM: rope settings as HF computes them', () => {
  const base = {
    model_type: 'deepseek_v3', vocab_size: 8, hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1,
    num_attention_heads: 1, q_lora_rank: null, kv_lora_rank: 8, qk_nope_head_dim: 128, qk_rope_head_dim: 64,
    v_head_dim: 128, rms_norm_eps: 1e-6, max_position_embeddings: 163840, rope_theta: 10000,
  };
  const yarn = {type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1};

  it('DeepSeek-V3 (mscale = mscale_all_dim = 1): softmax scale 0.1352337789, cos/sin multiplier 1', () => {
    const s = referenceSettings({...base, rope_scaling: {...yarn, mscale: 1, mscale_all_dim: 1}});
    expect(s.ropeType).toBe('yarn');
    expect(s.softmaxScale).toBeCloseTo(0.1352337789, 9);
    expect(s.attentionFactor).toBe(1);
  });

  it('DeepSeek-V2-Lite (0.707 / 0.707): softmax scale 0.1147213868', () => {
    const s = referenceSettings({...base, model_type: 'deepseek_v2', rope_scaling: {...yarn, mscale: 0.707, mscale_all_dim: 0.707}});
    expect(s.softmaxScale).toBeCloseTo(0.1147213868, 9);
    expect(s.attentionFactor).toBe(1);
    expect(s.interleave).toBeTrue();
  });

  it('inv_freq: extrapolated below dim 10, interpolated (÷factor) from 23, the linear ramp between (V3 numbers)', () => {
    // corr(32) = 64·ln(4096/(64π)) / (2 ln 10⁴) = 10.47 → floor 10; corr(1) = 22.52 → ceil 23.
    const s = referenceSettings({...base, rope_scaling: {...yarn, mscale: 1, mscale_all_dim: 1}});
    expect(s.invFreq.length).toBe(32);
    for (let i = 0; i < 32; i++) {
      const extrapolation = 10000 ** (-2 * i / 64);
      const ramp = Math.min(Math.max((i - 10) / 13, 0), 1);
      const want = ramp * extrapolation / 40 + (1 - ramp) * extrapolation;
      expect(Math.abs(s.invFreq[i] - want)).toBeLessThan(1e-15 * extrapolation);
    }
    expect(s.invFreq[10]).toBe(10000 ** (-20 / 64));
    expect(s.invFreq[23]).toBeCloseTo(10000 ** (-46 / 64) / 40, 17);
  });

  it('attention_factor: given wins; mscale ≠ mscale_all_dim → g(f, m)/g(f, m_all); no mscale keys → g(f, 1)', () => {
    const given = referenceSettings({...base, rope_scaling: {...yarn, mscale: 0.8, mscale_all_dim: 0.5, attention_factor: 1.25}});
    expect(given.attentionFactor).toBe(1.25);
    expect(given.softmaxScale).toBeCloseTo(192 ** -0.5 * yarnGetMscale(40, 0.5) ** 2, 15);
    const ratio = referenceSettings({...base, rope_scaling: {...yarn, mscale: 0.8, mscale_all_dim: 0.5}});
    expect(ratio.attentionFactor).toBeCloseTo((0.08 * Math.log(40) + 1) / (0.05 * Math.log(40) + 1), 15);
    const none = referenceSettings({...base, rope_scaling: yarn});
    expect(none.attentionFactor).toBeCloseTo(0.1 * Math.log(40) + 1, 15);
    expect(none.softmaxScale).toBe(192 ** -0.5);   // no mscale_all_dim: no softmax factor
    // rope_parameters (transformers 5) reads the same, with rope_type instead of type.
    const v5 = referenceSettings({...base, rope_theta: undefined,
                                  rope_parameters: {rope_theta: 10000, rope_type: 'yarn', factor: 40,
                                                    original_max_position_embeddings: 4096, mscale: 0.8, mscale_all_dim: 0.5}});
    expect(v5.attentionFactor).toBe(ratio.attentionFactor);
    expect(Array.from(v5.invFreq)).toEqual(Array.from(ratio.invFreq));
  });

  it('routed layers: n_routed_experts null → none; first_k_dense_replace ≥ layers → none; else listed', () => {
    const cfg = {...base, num_hidden_layers: 3};
    expect(referenceSettings({...cfg, n_routed_experts: null, first_k_dense_replace: 0}).moeLayers).toEqual([]);
    expect(referenceSettings({...cfg, n_routed_experts: 4, first_k_dense_replace: 3}).moeLayers).toEqual([]);
    expect(referenceSettings({...cfg, n_routed_experts: 4, first_k_dense_replace: 1}).moeLayers).toEqual([1, 2]);
    expect(referenceSettings({...cfg, model_type: 'youtu'}).moeLayers).toEqual([]);
    expect(() => referenceSettings({...cfg, model_type: 'llama'})).toThrowError(/model_type/);
  });
});
