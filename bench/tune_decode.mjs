#!/usr/bin/env node
// node bench/tune_decode.mjs [--context 2048] [--batch 1] [--tilings '[{"workgroupSize":16}, …]']
//
// MLADecode alone on webgpu in Node at DeepSeek-V2-Lite sizes (16 heads, 576-wide rows, L 512):
// the median time of one call for each tiling (dispatches back to back, one sync; the sync's
// fixed latency removed), its max |Δ| against a float64 JavaScript reference of the same
// attention, and the kernel's roofline from a read and an FMA probe of the same run. For
// choosing planMLADecode's numbers; `npm run bench` is the benchmark of record.
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const S = Number(option('context', '2048'));
const B = Number(option('batch', '1'));
const tilings = JSON.parse(option('tilings', '[{}]'));
const reps = Number(option('reps', '7'));

const nodeSetup = await import('../dist/node.js');
await nodeSetup.rerunWithVulkanLoader();
const tf = await import('@tensorflow/tfjs-core');
const mla = await import('../dist/index.js');
const {setMLADecodeTiling, planMLADecode} = await import('../dist/kernels/webgpu/mla_decode_webgpu.js');
const {BatchTimer, measureSyncLatency, median} = await import('./lib/timing.mjs');
const probes = await import('./lib/probes.mjs');
const model = await import('./lib/model.mjs');
const work = await import('./lib/work.mjs');

await nodeSetup.initNodeWebGPU();
const cfg = model.V2_LITE;
const H = cfg.numHeads;
const L = cfg.kvLoraRank;
const D = L + cfg.qkRopeHeadDim;
const kvParams = model.makeKvParams(cfg);
const S0 = S - 1;
const {collection} = model.decodeCache(kvParams, B, S0);
const dense = model.randomTensor([B, S0, D], 7);
await model.fillPagedCache(collection, dense);
const storage = collection.storage(0);
const {tokenInfo, lookup} = model.stepTensors(collection);
const q = model.randomTensor([B, H, D], 8);
const scale = 1 / Math.sqrt(cfg.qkNopeHeadDim + cfg.qkRopeHeadDim);
const attrs = {scale, kvLoraRank: L, maxContextLength: S};

// The new token's own row (position S − 1) is whatever the cache holds there: read it back.
const lookupValues = await lookup.data();
const storageValues = await storage.data();
const qValues = await q.data();
const pageSize = kvParams.pageSize;
const maxPages = lookup.shape[1];
const reference = new Float64Array(B * H * L);
for (let b = 0; b < B; b++) {
  const rows = [];
  for (let k = 0; k < S; k++) {
    const page = lookupValues[b * maxPages + Math.floor(k / pageSize)];
    rows.push(((page * pageSize) + (k % pageSize)) * D);
  }
  for (let h = 0; h < H; h++) {
    const qRow = (b * H + h) * D;
    const scores = rows.map((r) => {
      let s = 0;
      for (let c = 0; c < D; c++) s += qValues[qRow + c] * storageValues[r + c];
      return s * scale;
    });
    const m = Math.max(...scores);
    const p = scores.map((s) => Math.exp(s - m));
    const sum = p.reduce((a, x) => a + x, 0);
    for (let c = 0; c < L; c++) {
      let o = 0;
      for (let k = 0; k < S; k++) o += p[k] * storageValues[rows[k] + c];
      reference[(b * H + h) * L + c] = o / sum;
    }
  }
}

const syncLatency = await measureSyncLatency();
const read = await probes.readProbe(B * S * D, syncLatency, {quick: true});
const fma = await probes.fmaProbe(syncLatency, {quick: true});
const kernelWork = work.mlaDecodeWork(cfg, B, S);
const roof = work.roofline(kernelWork, read.gbPerS, fma.gflopPerS);
console.log(`context ${S}, batch ${B}: read ${read.gbPerS.toFixed(2)} GB/s, FMA ${fma.gflopPerS.toFixed(2)} GFLOP/s, ` +
            `roofline ${roof.ms.toFixed(2)} ms (${roof.bound})`);

const limits = {invocations: 256, storageBytes: 16384};
for (const tiling of tilings) {
  setMLADecodeTiling(tiling);
  const plan = planMLADecode(B, H, D, L, S, limits, true, globalThis.navigator?.hardwareConcurrency ?? 4);
  const t0 = performance.now();
  const first = mla.mlaDecode(q, storage, lookup, tokenInfo, attrs);
  const values = await first.data();
  const compileMs = performance.now() - t0;
  first.dispose();
  let maxDiff = 0;
  for (let i = 0; i < values.length; i++) maxDiff = Math.max(maxDiff, Math.abs(values[i] - reference[i]));
  const timer = new BatchTimer(() => mla.mlaDecode(q, storage, lookup, tokenInfo, attrs), syncLatency);
  await timer.warmUp();
  const times = [];
  for (let i = 0; i < reps; i++) times.push(await timer.runBatch(timer.k));
  const ms = median(times);
  console.log(`${JSON.stringify(plan)}  ${ms.toFixed(2)} ms (${(ms / roof.ms).toFixed(2)}× roofline)` +
              `  first call ${compileMs.toFixed(0)} ms  max|Δ| ${maxDiff.toExponential(2)}`);
}
setMLADecodeTiling({});
await nodeSetup.releaseNodeWebGPU();
