import {readdirSync, readFileSync} from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import {CausalLM, loadCausalLM} from '../../src/models/index.js';
import {LMExpected} from '../helpers/lm_fixture.js';
import {memoryFetch, MemoryFetchOptions} from '../helpers/memory_fetch.js';

// loadCausalLM's and CausalLM's errors, HTTP behaviour (Range, a server without it, 404,
// truncation) and generate's options, on the tiny_mla_lm fixture served from memory (cpu).
const FIXTURE = 'test/fixtures/tiny_mla_lm';
const expected = JSON.parse(readFileSync(`${FIXTURE}/expected.json`, 'utf8')) as LMExpected;
const SHARD_1 = 'model-00001-of-00002.safetensors';
const SHARD_2 = 'model-00002-of-00002.safetensors';

function fixtureFiles(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const name of readdirSync(FIXTURE)) {
    if (name !== 'expected.json' && name !== 'README.md') files.set(name, new Uint8Array(readFileSync(`${FIXTURE}/${name}`)));
  }
  return files;
}

function withConfig(edit: (config: Record<string, unknown>) => void): Map<string, Uint8Array> {
  const files = fixtureFiles();
  const config = JSON.parse(new TextDecoder().decode(files.get('config.json')!));
  edit(config);
  files.set('config.json', new TextEncoder().encode(JSON.stringify(config)));
  return files;
}

async function load(files: Map<string, Uint8Array>, options: MemoryFetchOptions = {}, dtype: 'float32'|'bfloat16' = 'float32') {
  const server = memoryFetch(files, options);
  return {server, lm: await loadCausalLM(server.base, {dtype, fetch: server.fetch})};
}

/** Expects `run` to reject with an Error matching every pattern, and no tensor left behind. */
async function expectFailure(run: () => Promise<unknown>, patterns: RegExp[]): Promise<void> {
  const before = tf.memory().numTensors;
  let message = '';
  try {
    await run();
  } catch (e) {
    message = (e as Error).message;
  }
  expect(message).not.toBe('');
  for (const pattern of patterns) expect(message).toMatch(pattern);
  expect(tf.memory().numTensors).toBe(before);
}

describe('models: loading over HTTP (memory server)', () => {
  it('reads the headers and then the needed ranges, never more bytes than the files hold', async () => {
    const files = fixtureFiles();
    const {server, lm} = await load(files);
    try {
      const total = [SHARD_1, SHARD_2, 'config.json', 'model.safetensors.index.json']
          .reduce((sum, f) => sum + files.get(f)!.byteLength, 0);
      expect(server.bytesSent()).toBeLessThanOrEqual(total);
      const shardReads = server.requests.filter((r) => r.file.endsWith('.safetensors'));
      expect(shardReads.every((r) => r.status === 206 && r.range !== null)).toBe(true);
      // Per shard: the 8-byte length, the header, then runs of adjacent tensors.
      expect(shardReads.filter((r) => r.range === 'bytes=0-7').length).toBe(2);
      expect(lm.loadStats.wholeFileReads).toEqual([]);
      expect(Array.from(await lm.logits(expected.prompts[0])).length).toBe(7 * 512);
    } finally {
      lm.dispose();
    }
  });

  it('falls back to whole files with a warning when the server ignores Range', async () => {
    const warn = spyOn(console, 'warn');
    const {server, lm} = await load(fixtureFiles(), {supportRange: false});
    try {
      expect(warn).toHaveBeenCalledTimes(2);
      expect(String(warn.calls.argsFor(0)[0])).toMatch(/ignores HTTP Range/);
      expect(lm.loadStats.wholeFileReads.length).toBe(2);
      expect(server.requests.filter((r) => r.file === SHARD_1).length).toBe(1);
      expect(await lm.generate([expected.prompts[0]], {maxNewTokens: 12})).toEqual([expected.greedy[0]]);
    } finally {
      lm.dispose();
    }
  });

  it('reports progress up to the tensor bytes of the model', async () => {
    const server = memoryFetch(fixtureFiles());
    const seen: Array<{loadedBytes: number, totalBytes: number, file: string}> = [];
    const lm = await loadCausalLM(server.base, {fetch: server.fetch, onProgress: (p) => seen.push(p)});
    lm.dispose();
    const last = seen[seen.length - 1];
    expect(last.loadedBytes).toBe(last.totalBytes);
    expect(last.totalBytes).toBe(427360);  // the index's metadata.total_size
    expect(seen.every((p, i) => i === 0 || p.loadedBytes >= seen[i - 1].loadedBytes)).toBe(true);
    expect(seen.some((p) => p.file.endsWith(SHARD_1)) && seen.some((p) => p.file.endsWith(SHARD_2))).toBe(true);
  });

  it('a missing shard: an Error naming its URL and the HTTP status', async () => {
    const files = fixtureFiles();
    files.delete(SHARD_2);
    await expectFailure(() => load(files), [new RegExp(`${SHARD_2}: HTTP 404`)]);
  });

  it('a missing config.json: an Error naming it', async () => {
    const files = fixtureFiles();
    files.delete('config.json');
    await expectFailure(() => load(files), [/config\.json: HTTP 404/]);
  });

  it('a truncated shard: an Error naming the file and the tensor', async () => {
    const files = fixtureFiles();
    const size = files.get(SHARD_2)!.byteLength;
    await expectFailure(() => load(files, {truncate: new Map([[SHARD_2, size - 100]])}),
                        [new RegExp(`${SHARD_2} is truncated`), /reading tensors? .*'model\.norm\.weight'|lm_head/]);
  });

  it('a shape that does not match config.json: an Error naming the file, tensor, shapes', async () => {
    const files = withConfig((c) => {
      c.intermediate_size = 128;
    });
    await expectFailure(() => load(files), [/model-0000[12]-of-00002\.safetensors/, /mlp\.(down|gate|up)_proj\.weight/,
                                            /\[(160, 64|64, 160)\]/, /expected \[(128, 64|64, 128)\]/]);
  });

  it('a tensor missing from the index: an Error naming it', async () => {
    const files = fixtureFiles();
    const index = JSON.parse(new TextDecoder().decode(files.get('model.safetensors.index.json')!));
    delete index.weight_map['model.layers.2.mlp.up_proj.weight'];
    files.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index)));
    await expectFailure(() => load(files), [/'model\.layers\.2\.mlp\.up_proj\.weight' is missing from model\.safetensors\.index\.json/]);
  });

  it('architectures other than dense youtu / deepseek_v2 / deepseek_v3: Errors naming what is missing', async () => {
    await expectFailure(() => load(withConfig((c) => {
      c.model_type = 'llama';
    })), [/model_type: "llama" is not supported/, /'youtu', 'deepseek_v2', 'deepseek_v3'/]);
    await expectFailure(() => load(withConfig((c) => {
      Object.assign(c, {model_type: 'deepseek_v3', n_routed_experts: 8, first_k_dense_replace: 1, moe_layer_freq: 1});
    })), [/layer 1 .* routes to experts/, /routed experts \(MoE\) are not supported/]);
    await expectFailure(() => load(withConfig((c) => {
      c.hidden_act = 'gelu';
    })), [/hidden_act: only 'silu'/]);
  });

  it('tie_word_embeddings true (youtu\'s default) uses embed_tokens as the head and needs no lm_head', async () => {
    const files = withConfig((c) => {
      delete c.tie_word_embeddings;
    });
    const {server, lm} = await load(files);
    try {
      expect(lm.config.tieWordEmbeddings).toBe(true);
      // lm_head.weight (in shard 2) is not read: fewer bytes than the untied model's tensors.
      expect(server.bytesSent()).toBeLessThan(427360);
      const logits = await lm.logits([1, 4]);
      // The head is the embedding: with one token, compare against the untied head's logits.
      expect(logits.length).toBe(2 * 512);
    } finally {
      lm.dispose();
    }
  });
});

describe('models: CausalLM arguments and generate options (cpu)', () => {
  let lm: CausalLM;

  beforeAll(async () => {
    lm = (await load(fixtureFiles(), {}, 'float32')).lm;
  });

  afterAll(() => lm.dispose());

  it('rejects bad token ids, naming the argument and the index', async () => {
    await expectFailure(() => lm.logits([]), [/logits ids: expected a non-empty array/]);
    await expectFailure(() => lm.logits([1, 512]), [/logits ids\[1\]: expected a token id in \[0, 512\), got 512/]);
    await expectFailure(() => lm.generate([[1], [2, 1.5]], {maxNewTokens: 2}), [/generate prompts\[1\]\[1\]/]);
    await expectFailure(() => lm.generate([], {maxNewTokens: 2}), [/generate prompts: expected a non-empty array/]);
  });

  it('rejects bad options, naming each', async () => {
    const prompts = [expected.prompts[0]];
    await expectFailure(() => lm.generate(prompts, {maxNewTokens: 0}), [/maxNewTokens/]);
    await expectFailure(() => lm.generate(prompts, {maxNewTokens: 2, temperature: -1}), [/temperature/]);
    await expectFailure(() => lm.generate(prompts, {maxNewTokens: 2, temperature: 1, topP: 0}), [/topP/]);
    await expectFailure(() => lm.generate(prompts, {maxNewTokens: 2, temperature: 1, topK: 0}), [/topK/]);
  });

  it('refuses what does not fit the rope table or the cache, before any step, and stays usable', async () => {
    // maxSeqLen = max_position_embeddings 256; 4 pages of 64 tokens.
    await expectFailure(() => lm.generate([expected.prompts[1]], {maxNewTokens: 240}),
                        [/generate prompts\[0\]: 258 tokens/, /maxSeqLen 256/]);
    await expectFailure(() => lm.generate([expected.prompts[1], expected.prompts[1], expected.prompts[1]],
                                          {maxNewTokens: 100}), [/the cache is too small/, /need 6 more pages/, /4 are free/]);
    expect(lm.cache.numFreePages).toBe(4);
    expect(await lm.generate([expected.prompts[0]], {maxNewTokens: 12})).toEqual([expected.greedy[0]]);
    expect(lm.cache.numFreePages).toBe(4);
  });

  it('streams every token through onToken, stops at a stop token (kept) and keeps the others going', async () => {
    const seen: Array<[number, number]> = [];
    const stop = expected.greedy[1][3];
    const out = await lm.generate(expected.prompts, {maxNewTokens: 12, stopTokens: [stop],
                                                     onToken: (token, sequence) => seen.push([sequence, token])});
    expect(out[1]).toEqual(expected.greedy[1].slice(0, 4));
    const upTo = expected.greedy[0].indexOf(stop);
    expect(out[0]).toEqual(upTo < 0 ? expected.greedy[0] : expected.greedy[0].slice(0, upTo + 1));
    expect(seen.filter(([s]) => s === 0).map(([, t]) => t)).toEqual(out[0]);
    expect(seen.filter(([s]) => s === 1).map(([, t]) => t)).toEqual(out[1]);
  });

  it('samples reproducibly with a seed; topK 1 is greedy', async () => {
    const prompts = expected.prompts;
    const a = await lm.generate(prompts, {maxNewTokens: 8, temperature: 1, seed: 7});
    const b = await lm.generate(prompts, {maxNewTokens: 8, temperature: 1, seed: 7});
    const c = await lm.generate(prompts, {maxNewTokens: 8, temperature: 1, seed: 8});
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(await lm.generate(prompts, {maxNewTokens: 8, temperature: 1, topK: 1, seed: 3}))
        .toEqual(expected.greedy.map((g) => g.slice(0, 8)));
    expect(await lm.generate(prompts, {maxNewTokens: 8, temperature: 0.7, topP: 1e-6, seed: 3}))
        .toEqual(expected.greedy.map((g) => g.slice(0, 8)));
  });

  it('logits of a prompt longer than a head block (64 rows) agree with its prefixes\' last rows', async () => {
    const prompt = Array.from({length: 150}, (_, i) => (i * 37 + 11) % 512);
    const all = await lm.logits(prompt);
    expect(all.length).toBe(150 * 512);
    for (const t of [0, 63, 64, 100, 149]) {
      const prefix = await lm.logits(prompt.slice(0, t + 1));
      const want = prefix.subarray(t * 512);
      const got = all.subarray(t * 512, (t + 1) * 512);
      let diff = 0;
      for (let i = 0; i < 512; i++) diff = Math.max(diff, Math.abs(got[i] - want[i]));
      expect(diff).toBeLessThan(1e-4);
    }
  });

  it('a session continues where it stopped: two calls give the tokens one call gives', async () => {
    const session = lm.createSession();
    try {
      const first = await session.generate(expected.prompts[0], {maxNewTokens: 5});
      const seen: number[] = [];
      const rest = await session.generate([], {maxNewTokens: 7, onToken: (t, i) => seen.push(i === 0 ? t : -1)});
      expect([...first, ...rest]).toEqual(expected.greedy[0]);
      expect(seen).toEqual(rest);
      expect(session.tokens).toEqual([...expected.prompts[0], ...expected.greedy[0]]);
      // A new turn: the cached rows plus [the last token, input] equal a fresh run of the whole sequence.
      const turn = [1, 4, 214];
      const fresh = await lm.generate([[...session.tokens, ...turn]], {maxNewTokens: 4});
      expect(await session.generate(turn, {maxNewTokens: 4})).toEqual(fresh[0]);
    } finally {
      session.dispose();
    }
    expect(lm.cache.numFreePages).toBe(4);
  });

  it('a session refuses overlapping calls, calls after dispose, and what does not fit', async () => {
    const session = lm.createSession();
    const running = session.generate(expected.prompts[1], {maxNewTokens: 2});
    await expectFailure(() => session.generate([5], {maxNewTokens: 1}), [/still running/]);
    await running;
    await expectFailure(() => session.generate([5], {maxNewTokens: 250}), [/LMSession generate input/, /maxSeqLen 256/]);
    const empty = lm.createSession();
    await expectFailure(() => empty.generate([], {maxNewTokens: 1}), [/non-empty for a new session/]);
    empty.dispose();
    session.dispose();
    await expectFailure(() => session.generate([5], {maxNewTokens: 1}), [/disposed/]);
  });

  it('a disposed model says so', async () => {
    const other = (await load(fixtureFiles(), {}, 'float32')).lm;
    other.dispose();
    await expectFailure(() => other.logits([1]), [/disposed/]);
  });
});
