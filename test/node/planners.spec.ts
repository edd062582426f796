import {KVCacheParams, LatentAttentionWithRope, PagedKVCache, planPrefillChunks, prefillChunks, RotaryEmbedding} from '../../src/index.js';
import {MLADecodePlan, planMLADecode, setMLADecodeTiling} from '../../src/kernels/webgpu/mla_decode_webgpu.js';
import {chooseMLAPrefillTiling, MLAPrefillDims} from '../../src/kernels/webgpu/mla_prefill_webgpu.js';
import {seededRandom} from '../helpers/mla_fixtures.js';

// The host-side planners: the layer's prefill chunk plan and the webgpu kernels' tilings
// (pure functions of shapes and device limits; the kernels themselves are checked against the
// cpu reference in the browser lane).

describe('createMlaPrefillMetadata', () => {
  it("reproduces MAX's prefill-plan test exactly (page 128, buffer 256, prompts [160, 200])", () => {
    const plan = planPrefillChunks([160, 200], 128, 256);
    expect(plan.bufferRowOffsets.length).toBe(16);
    expect(plan.bufferRowOffsets[0]).toEqual([0, 256, 256]);
    expect(plan.bufferRowOffsets[1]).toEqual([0, 0, 256]);
    expect(plan.cacheOffsets[0].slice(0, 2)).toEqual([0, 0]);
    expect(plan.cacheOffsets[1].slice(0, 2)).toEqual([256, 0]);
    for (let c = 2; c < 16; c++) expect(plan.cacheOffsets[c].slice(0, 2)).toEqual([256, 256]);
    expect(plan.bufferLengths).toEqual([256, 256, ...new Array(14).fill(-1)]);
  });

  it('is what the layer plans for a step, through the public API', () => {
    const rope = new RotaryEmbedding({dim: 8, nHeads: 2, theta: 10000, maxSeqLen: 512});
    const layer = new LatentAttentionWithRope({
      rope, numAttentionHeads: 2, numKeyValueHeads: 2, hiddenSize: 8, bufferSize: 256,
      kvParams: new KVCacheParams({headDim: 16, pageSize: 128}),
      kvLoraRank: 8, qkNopeHeadDim: 4, qkRopeHeadDim: 8, vHeadDim: 4});
    const cache = new PagedKVCache(layer.kvParams, {totalNumPages: 4});
    cache.claim(0);
    cache.claim(1);
    const collection = cache.fetch([0, 1], [160, 200]);
    const plan = layer.createMlaPrefillMetadata([0, 160, 360], collection);
    expect(plan).toEqual(planPrefillChunks([160, 200], 128, 256));
    expect(() => layer.createMlaPrefillMetadata([0, 160, 361], collection))
        .toThrowError(/inputRowOffsets: sequence 1 \(batch row 1\) has 201 rows, but kvCollection was fetched with numNewTokens 200/);
    cache.dispose();
    rope.dispose();
  });

  it('splits a context that spans several chunks', () => {
    const plan = planPrefillChunks([5, 3], 2, 4);  // aligned [6, 4]: rows 0..6 and 6..10
    expect(plan.bufferRowOffsets.slice(0, 3)).toEqual([[0, 4, 4], [0, 2, 4], [0, 0, 2]]);
    expect(plan.cacheOffsets.slice(0, 3).map((r) => r.slice(0, 2))).toEqual([[0, 0], [4, 0], [6, 2]]);
    expect(plan.bufferLengths.slice(0, 4)).toEqual([4, 4, 2, -1]);
  });
});

describe('prefillChunks', () => {
  it('compacts each chunk to the tokens that exist (page padding skipped), empty chunks dropped', () => {
    const contexts = [5, 3];
    const chunks = prefillChunks(planPrefillChunks(contexts, 2, 4), contexts, (b, k) => 100 * b + k);
    expect(chunks.map((c) => c.slots)).toEqual([[0, 1, 2, 3], [4, 100, 101], [102]]);
    // (bufferStart, firstToken, numRows) per batch row.
    expect(chunks.map((c) => Array.from(c.chunkInfo))).toEqual([
      [0, 0, 4, 4, 0, 0], [0, 4, 1, 1, 0, 2], [0, 6, 0, 0, 2, 1]]);
  });

  it('covers every token of every sequence exactly once, within bufferSize rows per chunk (seeded)', () => {
    const random = seededRandom(515);
    const draw = (n: number) => Math.floor((random() + 1) / 2 * n);
    for (let trial = 0; trial < 200; trial++) {
      const contexts = Array.from({length: 1 + draw(5)}, () => draw(3) === 0 ? draw(3) : 1 + draw(300));
      const pageSize = [1, 2, 3, 16, 128][draw(5)];
      const bufferSize = [1, 4, 7, 64, 256, 16384][draw(6)];
      const what = `trial ${trial}: contexts ${JSON.stringify(contexts)}, page ${pageSize}, buffer ${bufferSize}`;
      const plan = planPrefillChunks(contexts, pageSize, bufferSize);
      expect(plan.bufferLengths.length).withContext(what).toBeGreaterThanOrEqual(16);
      const chunks = prefillChunks(plan, contexts, (b, k) => b * 100_000 + k);
      const seen = new Map<number, number>();
      const wrongRows: string[] = [];
      for (const chunk of chunks) {
        expect(chunk.slots.length).withContext(what).toBeLessThanOrEqual(bufferSize);
        expect(chunk.slots.length).withContext(what).toBeGreaterThan(0);
        for (let b = 0; b < contexts.length; b++) {
          const [start, first, rows] = Array.from(chunk.chunkInfo.subarray(3 * b, 3 * b + 3));
          for (let j = 0; j < rows; j++) {
            if (chunk.slots[start + j] !== b * 100_000 + first + j) wrongRows.push(`sequence ${b} row ${j}`);
          }
        }
        for (const slot of chunk.slots) seen.set(slot, (seen.get(slot) ?? 0) + 1);
      }
      expect(wrongRows).withContext(`${what}: chunkInfo rows whose slot is not (b, firstToken + j)`).toEqual([]);
      const expected = contexts.flatMap((n, b) => Array.from({length: n}, (_, k) => b * 100_000 + k));
      expect([...seen.keys()].sort((x, y) => x - y)).withContext(what).toEqual(expected);
      expect([...seen.values()].every((count) => count === 1)).withContext(`${what}: each token once`).toBe(true);
    }
  });
});

describe('webgpu MLADecode plan', () => {
  const limits = {invocations: 256, storageBytes: 16384};
  afterEach(() => setMLADecodeTiling({}));

  it('DeepSeek-V2-Lite sizes: the software plan (8 lanes, 2 splits on 2 threads) and the GPU plan (16 lanes, 16 splits)', () => {
    // One token, 16 heads, rows of 512 + 64, context 2048 (the sizes the plan was tuned at).
    expect(planMLADecode(1, 16, 576, 512, 2048, limits, true, 2)).toEqual({
      workgroupSize: 8, headsPerBlock: 16, keysPerTile: 4, numHeadBlocks: 1, numSplits: 2, chunk: 1024});
    expect(planMLADecode(1, 16, 576, 512, 2048, limits, false)).toEqual({
      workgroupSize: 16, headsPerBlock: 16, keysPerTile: 4, numHeadBlocks: 1, numSplits: 16, chunk: 128});
  });

  it('covers every head and key within the limits, for any shape and context', () => {
    const expectValid = (plan: MLADecodePlan, heads: number, context: number,
                         lim: {invocations: number, storageBytes: number}, what: string) => {
      expect(plan.workgroupSize).withContext(`${what}: workgroupSize`).toBeGreaterThanOrEqual(1);
      expect(plan.workgroupSize).withContext(`${what}: workgroupSize`).toBeLessThanOrEqual(Math.min(256, lim.invocations));
      expect(plan.headsPerBlock * plan.numHeadBlocks).withContext(`${what}: heads covered`).toBeGreaterThanOrEqual(heads);
      expect((plan.numHeadBlocks - 1) * plan.headsPerBlock).withContext(`${what}: no empty head block`).toBeLessThan(heads);
      expect(plan.keysPerTile).withContext(`${what}: keysPerTile`).toBeGreaterThanOrEqual(1);
      expect(plan.keysPerTile * plan.headsPerBlock * plan.workgroupSize * 4)
          .withContext(`${what}: score partials in workgroup memory`)
          .toBeLessThanOrEqual(Math.min(8192, lim.storageBytes / 2));
      expect(plan.chunk % plan.keysPerTile).withContext(`${what}: chunk in whole tiles`).toBe(0);
      expect(plan.numSplits).withContext(`${what}: numSplits`).toBeGreaterThanOrEqual(1);
      expect(plan.numSplits).withContext(`${what}: numSplits`).toBeLessThanOrEqual(64);
      expect(plan.numSplits * plan.chunk).withContext(`${what}: splits cover the context`).toBeGreaterThanOrEqual(context);
      expect((plan.numSplits - 1) * plan.chunk).withContext(`${what}: no empty split`).toBeLessThan(Math.max(1, context));
    };
    for (const lim of [limits, {invocations: 128, storageBytes: 32768}, {invocations: 64, storageBytes: 16384}]) {
      for (const [rowWidth, latentDim] of [[576, 512], [24, 16], [15, 9], [4, 2]]) {
        for (const heads of [1, 3, 5, 16, 128]) {
          for (const tokens of [1, 4, 9]) {
            for (const context of [1, 7, 129, 2100, 8192, 100_000]) {
              for (const software of [true, false]) {
                const what = `T ${tokens}, H ${heads}, D ${rowWidth}, L ${latentDim}, context ${context}, ` +
                    `${software ? 'software' : 'GPU'}, limits ${JSON.stringify(lim)}`;
                expectValid(planMLADecode(tokens, heads, rowWidth, latentDim, context, lim, software, 2),
                            heads, context, lim, what);
              }
            }
          }
        }
      }
    }
  });

  it('honours setMLADecodeTiling overrides, within the device limits, and {} restores the automatic plan', () => {
    const auto = planMLADecode(3, 5, 24, 16, 43, limits, false);
    setMLADecodeTiling({workgroupSize: 4, headsPerBlock: 3, keysPerTile: 1, targetWorkgroups: 16, minKeysPerSplit: 8});
    // 2 head blocks of 3; 16 workgroups over 3 tokens × 2 blocks → 3 splits of 15 keys.
    expect(planMLADecode(3, 5, 24, 16, 43, limits, false)).toEqual({
      workgroupSize: 4, headsPerBlock: 3, keysPerTile: 1, numHeadBlocks: 2, numSplits: 3, chunk: 15});
    setMLADecodeTiling({workgroupSize: 512});
    expect(planMLADecode(3, 5, 24, 16, 43, {invocations: 64, storageBytes: 16384}, false).workgroupSize).toBe(64);
    setMLADecodeTiling({});
    expect(planMLADecode(3, 5, 24, 16, 43, limits, false)).toEqual(auto);
  });
});

describe('webgpu MLAPrefill tiling', () => {
  const v2Lite: MLAPrefillDims = {numHeads: 16, nopeDim: 128, ropeDim: 64, vDim: 128, kvLoraRank: 512};

  it('DeepSeek-V2-Lite sizes: 8 rows × 8 lanes on a software adapter, 1 row × 64 lanes on a GPU', () => {
    // A key is (128 + 64 + 128) / 4 = 80 vec4s = 1,280 bytes: 12 fit in 16 KiB beside the scalars.
    expect(chooseMLAPrefillTiling(v2Lite, 16384, 256, true))
        .toEqual({queriesPerThread: 8, threads: 8, tileKeys: 12, keyGroup: 2});
    expect(chooseMLAPrefillTiling(v2Lite, 16384, 256, false))
        .toEqual({queriesPerThread: 1, threads: 64, tileKeys: 12, keyGroup: 2});
  });

  it('fits its tiles in workgroup memory and its lanes in the invocation limit', () => {
    for (const dims of [v2Lite, {numHeads: 2, nopeDim: 8, ropeDim: 8, vDim: 8, kvLoraRank: 16},
                        {numHeads: 2, nopeDim: 5, ropeDim: 6, vDim: 7, kvLoraRank: 9}]) {
      const bytesPerKey = 16 * (Math.ceil(dims.nopeDim / 4) + Math.ceil(dims.ropeDim / 4) + Math.ceil(dims.vDim / 4));
      for (const workgroupBytes of [64 + bytesPerKey, 64 + 3 * bytesPerKey, 16384, 32768]) {
        for (const maxInvocations of [1, 4, 64, 256]) {
          for (const software of [true, false]) {
            const what = `${JSON.stringify(dims)}, ${workgroupBytes} bytes, ${maxInvocations} invocations, ` +
                `${software ? 'software' : 'GPU'}`;
            const t = chooseMLAPrefillTiling(dims, workgroupBytes, maxInvocations, software);
            expect(t.threads).withContext(what).toBeGreaterThanOrEqual(1);
            expect(t.threads).withContext(what).toBeLessThanOrEqual(maxInvocations);
            expect(t.keyGroup).withContext(what).toBeGreaterThanOrEqual(1);
            expect(t.tileKeys % t.keyGroup).withContext(`${what}: whole key groups`).toBe(0);
            expect(t.tileKeys).withContext(what).toBeLessThanOrEqual(64);
            expect(t.tileKeys * bytesPerKey).withContext(`${what}: tile bytes`).toBeLessThanOrEqual(workgroupBytes - 64);
          }
        }
      }
    }
    expect(chooseMLAPrefillTiling(v2Lite, 64 + 1280, 256, true).tileKeys).toBe(1);
  });

  it('rejects a workgroup memory too small for one key row', () => {
    expect(() => chooseMLAPrefillTiling(v2Lite, 1000, 256, false)).toThrowError(/workgroup memory/);
  });
});
