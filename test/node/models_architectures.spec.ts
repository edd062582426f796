import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {loadCausalLM} from '../../src/models/index.js';
import {startCheckpointServer} from '../../scripts/lib/checkpoint_server.mjs';
import {expectMatchesReference} from '../helpers/lm_compare.js';
import {CHECKPOINT_VARIANTS, makeCheckpoint, writeCheckpoint} from '../helpers/lm_checkpoints.js';

// Checkpoints the fixture does not cover — dense deepseek_v2 / deepseek_v3, tied heads,
// rope_parameters, YaRN with mscale ≠ mscale_all_dim or without mscale keys or with
// attention_factor, rms_norm_eps ≠ 1e-6, no q-LoRA, NeoX-halves rope, F32 shards — written by
// the test and compared with a float64 reference of HF's modeling code (cpu).
const DENSE = Object.keys(CHECKPOINT_VARIANTS).filter((name) => name !== 'deepseekV3Moe');

describe('models: checkpoints of every supported architecture vs the HF reference (cpu)', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tfjs-mla-lm-'));
  });

  afterAll(() => rmSync(dir, {recursive: true, force: true}));

  for (const name of DENSE) {
    it(`${name}: float32 logits within 1e-4·S at every position and the same greedy tokens, from a folder`, async () => {
      const checkpoint = makeCheckpoint(CHECKPOINT_VARIANTS[name]);
      const folder = path.join(dir, name);
      await writeCheckpoint(folder, checkpoint);
      const before = tf.memory().numTensors;
      const lm = await loadCausalLM(folder, {dtype: 'float32'});
      try {
        await expectMatchesReference(lm, checkpoint);
      } finally {
        lm.dispose();
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('deepseekV2YarnAttentionFactor over http://127.0.0.1 (Range, sharded): the same, bytes ≤ the files', async () => {
    const checkpoint = makeCheckpoint(CHECKPOINT_VARIANTS.deepseekV2YarnAttentionFactor);
    const server = await startCheckpointServer({files: checkpoint.files});
    try {
      const lm = await loadCausalLM(server.url, {dtype: 'float32'});
      try {
        await expectMatchesReference(lm, checkpoint);
      } finally {
        lm.dispose();
      }
      const fileBytes = [...checkpoint.files.values()].reduce((sum, b) => sum + b.byteLength, 0);
      // File bytes sent (the optional tokenizer files' 404 bodies aside).
      const sent = server.stats.requests.filter((r) => r.status < 300).reduce((sum, r) => sum + r.bytes, 0);
      expect(sent).toBeLessThanOrEqual(fileBytes);
      const shardReads = server.stats.requests.filter((r) => r.path.endsWith('.safetensors'));
      expect(shardReads.length).toBeGreaterThan(0);
      expect(shardReads.every((r) => r.status === 206)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('deepseekV3YarnMscales with bf16 weights and cache: within 3e-2·S', async () => {
    const checkpoint = makeCheckpoint(CHECKPOINT_VARIANTS.deepseekV3YarnMscales);
    const folder = path.join(dir, 'bf16');
    await writeCheckpoint(folder, checkpoint);
    const lm = await loadCausalLM(folder);
    try {
      await expectMatchesReference(lm, checkpoint, 'bfloat16');
    } finally {
      lm.dispose();
    }
  });

  it('a routed (MoE) layer is refused with an Error naming it', async () => {
    const checkpoint = makeCheckpoint(CHECKPOINT_VARIANTS.deepseekV3Moe);
    const folder = path.join(dir, 'moe');
    await writeCheckpoint(folder, checkpoint);
    await expectAsync(loadCausalLM(folder)).toBeRejectedWithError(/layer 1 .*routes to experts/);
  });
});
