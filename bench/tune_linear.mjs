#!/usr/bin/env node
// node bench/tune_linear.mjs [--m 512] [--k 2048] [--n 3072] [--configs '[[NB, workgroupSize], …]']
//
// MLALinear's program (y = x·wᵀ) alone on webgpu in Node, for each (NB = rows of w per
// invocation, workgroup size), against tf.matMul(x, w, false, true) on the same device in the
// same run: median ms of one call (K calls back to back, one sync, its latency removed),
// GFLOP/s and max |Δ| to tf.matMul. For choosing LinearProgram's defaults.
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const M = Number(option('m', '512'));
const K = Number(option('k', '2048'));
const N = Number(option('n', '3072'));
const configs = JSON.parse(option('configs', '[[4, 16], [8, 16], [4, 64], [2, 16]]'));

const nodeSetup = await import('../dist/node.js');
await nodeSetup.rerunWithVulkanLoader();
const tf = await import('@tensorflow/tfjs-core');
await import('../dist/index.js');
const {LinearProgram, linearVectorWidth, MAX_ROWS_PER_INVOCATION} = await import('../dist/kernels/webgpu/linear_webgpu.js');
const {linearLayout} = await import('../dist/kernels/layouts.js');
const {BatchTimer, measureSyncLatency, median} = await import('./lib/timing.mjs');
const model = await import('./lib/model.mjs');
await nodeSetup.initNodeWebGPU();

const x = model.randomTensor([M, K], 1);
const w = model.randomTensor([N, K], 2, 0.05);
const syncLatency = await measureSyncLatency();
const flops = 2 * M * N * K;
async function measure(label, fn, check) {
  const timer = new BatchTimer(fn, syncLatency, {targetMs: 300, maxK: 8});
  await timer.warmUp();
  const times = [];
  for (let i = 0; i < 3; i++) times.push(await timer.runBatch(timer.k));
  const ms = median(times);
  console.log(`${label.padEnd(28)} ${ms.toFixed(1).padStart(8)} ms  ${(flops / ms / 1e6).toFixed(2)} GFLOP/s${check ?? ''}`);
}
const reference = tf.matMul(x, w, false, true);
const referenceValues = await reference.data();
await measure(`tf.matMul`, () => tf.matMul(x, w, false, true));
const backend = tf.backend();
const layout = linearLayout([M, K], [N, K], null, false);
for (const [NB, workgroupSize] of configs) {
  const make = () => new LinearProgram({
    rowsPerInvocation: Math.min(M, MAX_ROWS_PER_INVOCATION), colsPerInvocation: NB, workgroupSize,
    vectorWidth: linearVectorWidth(layout), secondWeight: false, rmsNorm: false, residual: false, ropeTail: null, weightDtype: 'float32',
  }, {...layout, eps: 0, tail: null}, layout.outputShape);
  const run = () => {
    const program = make();
    const info = backend.runWebGPUProgram(program, [x, w], 'float32', program.uniformValues());
    return tf.engine().makeTensorFromTensorInfo(info);
  };
  const y = run();
  const values = await y.data();
  y.dispose();
  let maxDiff = 0;
  for (let i = 0; i < values.length; i++) maxDiff = Math.max(maxDiff, Math.abs(values[i] - referenceValues[i]));
  await measure(`MLALinear NB=${NB} WG=${workgroupSize}`, run, `  max|Δ| ${maxDiff.toExponential(2)}`);
}
tf.dispose([x, w, reference]);
await nodeSetup.releaseNodeWebGPU();
