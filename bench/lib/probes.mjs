// The device-limit probes: a read probe (achieved GB/s reading a buffer once) and an FMA probe
// (achieved GFLOP/s of independent multiply-adds in registers), measured in the same run as the
// kernels. On webgpu they are WebGPU programs on the same device; on the cpu backend (whose
// kernels are JavaScript on the main thread) they are the same two loops in JavaScript.
import * as tf from '@tensorflow/tfjs-core';
import {BatchTimer, median, now} from './timing.mjs';
import {fmaProbeProgram, hashFillProgram, hashFillUniforms, readProbeOutputFloats, readProbeProgram, run} from './webgpu_programs.mjs';

const FMA_FLOPS_PER_DISPATCH = 2 ** 28;  // ≈ 268 MFLOP: ~50 ms at 5.5 GFLOP/s

function readConfigs(quick) {
  const configs = [];
  for (const per of quick ? [2, 4] : [2, 4, 8, 16]) {
    for (const workgroupSize of quick ? [64] : [64, 256]) configs.push({kind: 'grid', per, workgroupSize});
  }
  for (const per of quick ? [8] : [8, 32]) configs.push({kind: 'grid', per, workgroupSize: 64, components: 1});
  for (const pattern of ['strided', 'blocked']) {
    for (const numWorkgroups of quick ? [64] : [32, 128]) {
      configs.push({kind: 'workgroup', pattern, workgroupSize: 64, numWorkgroups});
    }
    // Few small workgroups, one per CPU thread or so, each lane streaming its own run: the
    // fastest reads found on SwiftShader (numbers: bench/README.md, History), and MLALinear's
    // access pattern.
    for (const [workgroupSize, numWorkgroups] of quick ? [[16, 4]] : [[16, 4], [4, 4], [16, 16]]) {
      configs.push({kind: 'workgroup', pattern, workgroupSize, numWorkgroups});
    }
  }
  return configs;
}

function fmaConfigs(quick) {
  const shapes = quick ?
      [[8, 1, 'fma'], [4, 4, 'fma'], [8, 4, 'fma'], [8, 1, 'muladd']] :
      [[8, 1, 'fma'], [16, 1, 'fma'], [4, 4, 'fma'], [8, 4, 'fma'], [8, 1, 'muladd'], [8, 4, 'muladd']];
  // Few workgroups suit a CPU device (SwiftShader); a GPU needs tens of thousands of invocations.
  const grids = quick ? [[64, 64], [256, 4096]] : [[64, 64], [256, 32], [256, 512], [256, 4096]];
  const configs = [];
  for (const [chains, width, op] of shapes) {
    for (const [workgroupSize, numWorkgroups] of grids) {
      const perIteration = 2 * workgroupSize * numWorkgroups * chains * width * 4;
      const iterations = Math.max(16, Math.round(FMA_FLOPS_PER_DISPATCH / perIteration));
      configs.push({workgroupSize, numWorkgroups, chains, width, op, iterations});
    }
  }
  return configs;
}

/** Picks the fastest config (best of two timed batches each, after a compile run), then samples it. */
async function tuneAndMeasure(configs, makeFn, syncLatency, samples) {
  let best = null;
  for (const config of configs) {
    const {fn, work} = makeFn(config);
    const timer = new BatchTimer(fn, syncLatency, {targetMs: 100, maxK: 256});
    await timer.warmUp();
    const ms = Math.min(await timer.sample(), await timer.sample());
    const rate = work / ms;
    if (process.env.BENCH_DEBUG) console.error('  probe config', JSON.stringify(config), ms.toFixed(2), 'ms', (rate / 1e6).toFixed(3));
    if (best === null || rate > best.rate) best = {config, timer, work, rate};
  }
  const times = [];
  for (let i = 0; i < samples; i++) times.push(await best.timer.sample());
  const ms = median(times);
  return {config: best.config, ms, times, work: best.work, dispatchesPerSync: best.timer.k};
}

/**
 * Read probe on webgpu over `numFloats` floats: GB/s = bytes / time. Returns the winning
 * config as well.
 */
export async function webgpuReadProbe(numFloats, syncLatency, {quick = false, samples = 5, configs} = {}) {
  const buffer = run(hashFillProgram([numFloats]), [], 'float32', hashFillUniforms(7));
  try {
    const result = await tuneAndMeasure(configs ?? readConfigs(quick), (config) => {
      const program = readProbeProgram(numFloats, config);
      // Bytes moved: the buffer read once plus the (small) output written.
      const work = (numFloats + readProbeOutputFloats(numFloats, config)) * 4;
      return {fn: () => run(program, [buffer]), work};
    }, syncLatency, samples);
    const bytes = result.work;
    return {bytes, bufferBytes: numFloats * 4, ms: result.ms, gbPerS: bytes / result.ms / 1e6,
            config: result.config, times: result.times, dispatchesPerSync: result.dispatchesPerSync};
  } finally {
    buffer.dispose();
  }
}

/**
 * FMA probe on webgpu: GFLOP/s with 2 FLOPs per multiply-add. Each config's loop count is
 * raised (×4 at a time) until one dispatch takes at least 10 ms, so a fast GPU is not timed on
 * launch overhead.
 */
export async function webgpuFmaProbe(syncLatency, {quick = false, samples = 5, configs} = {}) {
  const calibrated = [];
  for (const base of configs ?? fmaConfigs(quick)) {
    let config = base;
    for (;;) {
      const {program, uniforms} = fmaProbeProgram(config);
      const timer = new BatchTimer(() => run(program, [], 'float32', uniforms), syncLatency, {maxK: 1});
      const single = await timer.warmUp();
      if (single >= 10 || config.iterations >= 2 ** 22) break;
      config = {...config, iterations: config.iterations * 4};
    }
    calibrated.push(config);
  }
  const result = await tuneAndMeasure(calibrated, (config) => {
    const {program, uniforms, flops} = fmaProbeProgram(config);
    return {fn: () => run(program, [], 'float32', uniforms), work: flops};
  }, syncLatency, samples);
  return {flops: result.work, ms: result.ms, gflopPerS: result.work / result.ms / 1e6,
          config: result.config, times: result.times, dispatchesPerSync: result.dispatchesPerSync};
}

// ---- JavaScript probes (cpu backend) ---------------------------------------------------------

function jsRead(values) {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const n = values.length - (values.length % 4);
  for (let i = 0; i < n; i += 4) {
    s0 += values[i];
    s1 += values[i + 1];
    s2 += values[i + 2];
    s3 += values[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

function jsFma(iterations, a, b) {
  let x0 = 0.1, x1 = 0.2, x2 = 0.3, x3 = 0.4, x4 = 0.5, x5 = 0.6, x6 = 0.7, x7 = 0.8;
  for (let i = 0; i < iterations; i++) {
    x0 = x0 * a + b; x1 = x1 * a + b; x2 = x2 * a + b; x3 = x3 * a + b;
    x4 = x4 * a + b; x5 = x5 * a + b; x6 = x6 * a + b; x7 = x7 * a + b;
  }
  return x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
}

let sink = 0;

/** The read probe of the cpu backend: one JavaScript pass over a Float32Array. */
export async function jsReadProbe(numFloats, {samples = 5} = {}) {
  const values = new Float32Array(numFloats);
  for (let i = 0; i < numFloats; i++) values[i] = (i % 1013) * 1e-3;
  const times = [];
  for (let i = 0; i < samples + 2; i++) {
    const t0 = now();
    sink += jsRead(values);
    if (i >= 2) times.push(now() - t0);
  }
  const ms = median(times);
  return {bytes: numFloats * 4, bufferBytes: numFloats * 4, ms, gbPerS: numFloats * 4 / ms / 1e6,
          config: {pattern: 'JavaScript loop, 4 accumulators'}, times, dispatchesPerSync: 1};
}

/** The FMA probe of the cpu backend: 8 independent x = x·a + b chains in JavaScript. */
export async function jsFmaProbe({samples = 5} = {}) {
  const iterations = 2 ** 24;
  const flops = 2 * 8 * iterations;
  const times = [];
  for (let i = 0; i < samples + 2; i++) {
    const t0 = now();
    sink += jsFma(iterations, 0.999999, 1e-6);
    if (i >= 2) times.push(now() - t0);
  }
  const ms = median(times);
  return {flops, ms, gflopPerS: flops / ms / 1e6,
          config: {chains: 8, width: 1, op: 'JavaScript x * a + b (float64)'}, times,
          dispatchesPerSync: 1};
}

/** Probes of the active backend. */
export async function readProbe(numFloats, syncLatency, options) {
  return tf.getBackend() === 'webgpu' ? webgpuReadProbe(numFloats, syncLatency, options) :
                                        jsReadProbe(numFloats, options);
}

export async function fmaProbe(syncLatency, options) {
  return tf.getBackend() === 'webgpu' ? webgpuFmaProbe(syncLatency, options) : jsFmaProbe(options);
}

export function probeSink() {
  return sink;
}
