// Custom WebGPU programs of the benchmark, run through the tfjs backend's public
// `runWebGPUProgram` on the same device as the kernels: the read and FMA probes, a trivial
// "sync" program (a 1-float output to read back), pseudo-random fills (uniform in ±√3, or in
// mean ± halfWidth: the random weights of the model case, lib/lm.mjs) and a scatter that writes
// rows into an existing tensor in place (used to fill the paged cache).
//
// Every constant baked into the WGSL is part of `shaderKey` (tfjs caches pipelines by it).
import * as tf from '@tensorflow/tfjs-core';

/**
 * A tfjs Tensor owning the output of `runWebGPUProgram`. The program is copied first:
 * runWebGPUProgram rewrites `program.shaderKey` into its full cache key, so running the same
 * object twice would extend the key again, miss the pipeline cache and recompile every call.
 */
export function run(program, inputs, dtype = 'float32', uniforms = undefined, output = undefined) {
  const backend = tf.backend();
  const info = backend.runWebGPUProgram({...program}, inputs, dtype, uniforms, output);
  return output === undefined ? tf.engine().makeTensorFromTensorInfo(info) : null;
}

/** The backend may keep a CPU copy of a tensor; after an in-place GPU write it is stale. */
function invalidateCpuCopy(tensor) {
  const data = tf.backend().tensorMap.get(tensor.dataId);
  if (data !== undefined && data.resource != null) data.values = null;
}

// ---- sync -----------------------------------------------------------------------------------

const syncProgram = {
  shaderKey: 'mlaBenchSync',
  outputShape: [1],
  dispatchLayout: {x: [0]},
  dispatch: [1, 1, 1],
  workgroupSize: [1, 1, 1],
  variableNames: [],
  size: true,  // every declared binding must be used: the uniforms through uniforms.size
  getUserCode: () => 'fn main(index : i32) { if (index < uniforms.size) { setOutputAtIndex(index, 1.0); } }',
};

/**
 * Waits until everything submitted so far has run: a 1-thread program writes one float and
 * it is read back (the queue is in order, so its completion implies all earlier work's).
 */
export async function syncWebGPU() {
  const t = run(syncProgram, []);
  await t.data();
  t.dispose();
}

// ---- read probe -----------------------------------------------------------------------------

/**
 * Reads `a` (float32, length a multiple of 4) once, as vec4 loads, and reduces it.
 *
 * kind 'grid': one invocation per `per` vec4s (or f32s with components 1); invocation i of the
 *   grid of G = n / per reads unit i, i + G, i + 2G, … (neighbouring invocations read
 *   neighbouring units) into one accumulator and writes one float: the output is
 *   1/(components·per) of the input.
 * kind 'workgroup': `numWorkgroups` workgroups stride over the whole buffer (pattern 'strided':
 *   neighbouring invocations read neighbouring vec4s; 'blocked': each invocation one contiguous
 *   run), four vec4 accumulators per invocation, one barrier, then invocation 0 sums the
 *   workgroup's partials and writes one float per workgroup.
 */
export function readProbeProgram(numFloats, config) {
  const n4 = numFloats / 4;
  if (!Number.isInteger(n4)) throw new Error('read probe: length must be a multiple of 4');
  if (config.kind === 'grid') {
    const {per, workgroupSize} = config;
    const components = config.components ?? 4;
    const units = numFloats / components;
    const invocations = Math.ceil(units / per);
    const loads = Array.from({length: per}, (_, j) =>
        j === 0 ? 's = A[index];' :
                  `if (index + ${j} * g < n) { s = s + A[index + ${j} * g]; }`).join('\n      ');
    const type = components === 4 ? 'vec4<f32>' : 'f32';
    const total = components === 4 ? '(s.x + s.y) + (s.z + s.w)' : 's';
    return {
      shaderKey: `mlaBenchReadGrid_${numFloats}_${per}_${workgroupSize}_${components}`,
      outputShape: [invocations],
      dispatchLayout: {x: [0]},
      dispatch: [Math.ceil(invocations / workgroupSize), 1, 1],
      workgroupSize: [workgroupSize, 1, 1],
      variableNames: ['A'],
      variableComponents: [components],
      size: true,
      getUserCode: () => `
  fn main(index : i32) {
    let g = uniforms.size;
    // From the uniforms rather than baked in: every declared binding must be used.
    let n = uniforms.aShape / ${components};
    if (index < g) {
      var s : ${type};
      ${loads}
      setOutputAtIndex(index, ${total});
    }
  }`,
    };
  }
  const {workgroupSize, numWorkgroups, pattern} = config;
  const grid = workgroupSize * numWorkgroups;
  const body = pattern === 'strided' ? `
    let stride = ${grid};
    var i = wg * ${workgroupSize} + lid;
    loop {
      if (i + 3 * stride >= n4) { break; }
      s0 = s0 + A[i];
      s1 = s1 + A[i + stride];
      s2 = s2 + A[i + 2 * stride];
      s3 = s3 + A[i + 3 * stride];
      i = i + 4 * stride;
    }
    loop {
      if (i >= n4) { break; }
      s0 = s0 + A[i];
      i = i + stride;
    }` : `
    let per = ${Math.ceil(n4 / grid)};
    let start = (wg * ${workgroupSize} + lid) * per;
    let end = min(start + per, n4);
    var i = start;
    loop {
      if (i + 3 >= end) { break; }
      s0 = s0 + A[i];
      s1 = s1 + A[i + 1];
      s2 = s2 + A[i + 2];
      s3 = s3 + A[i + 3];
      i = i + 4;
    }
    loop {
      if (i >= end) { break; }
      s0 = s0 + A[i];
      i = i + 1;
    }`;
  return {
    shaderKey: `mlaBenchReadWg_${numFloats}_${workgroupSize}_${numWorkgroups}_${pattern}`,
    outputShape: [numWorkgroups],
    dispatchLayout: {x: [0]},
    dispatch: [numWorkgroups, 1, 1],
    workgroupSize: [workgroupSize, 1, 1],
    variableNames: ['A'],
    variableComponents: [4],
    getUserCode: () => `
  var<workgroup> partial : array<f32, ${workgroupSize}>;
  fn main(index : i32) {
    let wg = i32(workgroupId.x);
    let lid = i32(localIndex);
    // From the uniforms rather than baked in: every declared binding must be used.
    let n4 = uniforms.aShape / 4;
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    ${body}
    let s = (s0 + s1) + (s2 + s3);
    partial[lid] = (s.x + s.y) + (s.z + s.w);
    workgroupBarrier();
    if (lid == 0) {
      var total = 0.0;
      for (var j = 0; j < ${workgroupSize}; j = j + 1) { total = total + partial[j]; }
      setOutputAtIndex(wg, total);
    }
  }`,
  };
}

/** Output floats a read-probe config writes (counted in its bytes). */
export function readProbeOutputFloats(numFloats, config) {
  return config.kind === 'grid' ? Math.ceil(numFloats / (config.components ?? 4) / config.per) :
                                  config.numWorkgroups;
}

// ---- FMA probe ------------------------------------------------------------------------------

/**
 * Each invocation runs `chains` independent multiply-add chains of `width`-wide floats
 * (x = x·a + b with a, b uniforms, so nothing folds), `iterations` × 4 (unrolled) steps, and
 * writes their sum once. op 'fma': WGSL fma(); 'muladd': x * a + b.
 * FLOPs = 2 · invocations · chains · width · 4 · iterations.
 */
export function fmaProbeProgram({workgroupSize, numWorkgroups, chains, width, op, iterations}) {
  const type = width === 1 ? 'f32' : `vec${width}<f32>`;
  const step = (x) => op === 'fma' ? `${x} = fma(${x}, a, b);` : `${x} = ${x} * a + b;`;
  const names = Array.from({length: chains}, (_, i) => `x${i}`);
  const init = names.map((x, i) =>
      `var ${x} = ${type}(f32(index) * 1e-7 + ${(i * 0.01).toFixed(2)});`).join('\n    ');
  const unrolled = [0, 1, 2, 3].map(() => names.map(step).join(' ')).join('\n      ');
  const sum = names.join(' + ');
  const reduce = width === 1 ? 'total' :
      ['total.x', 'total.y', 'total.z', 'total.w'].slice(0, width).join(' + ');
  const invocations = workgroupSize * numWorkgroups;
  return {
    program: {
      shaderKey: `mlaBenchFma_${workgroupSize}_${numWorkgroups}_${chains}_${width}_${op}_${iterations}`,
      outputShape: [invocations],
      dispatchLayout: {x: [0]},
      dispatch: [numWorkgroups, 1, 1],
      workgroupSize: [workgroupSize, 1, 1],
      variableNames: [],
      uniforms: 'a : f32, b : f32,',
      getUserCode: () => `
  fn main(index : i32) {
    let a = ${type}(uniforms.a);
    let b = ${type}(uniforms.b);
    ${init}
    for (var i = 0; i < ${iterations}; i = i + 1) {
      ${unrolled}
    }
    let total = ${sum};
    setOutputAtIndex(index, ${reduce});
  }`,
    },
    uniforms: [{type: 'float32', data: [0.999999]}, {type: 'float32', data: [1e-6]}],
    flops: 2 * invocations * chains * width * 4 * iterations,
  };
}

// ---- fill and scatter -----------------------------------------------------------------------

/**
 * A program filling a float32 tensor of `shape` on the device with hashed values: the PCG hash
 * of (index ^ PCG(seed)) gives u uniform in [-1, 1) (24 bits), and `value(u)` (a WGSL
 * expression in u's text) is what is written. `uniforms` declares `seed : u32` and whatever
 * `value` reads. The shared part of hashFillProgram and uniformFillProgram.
 */
function pcgFillProgram(shaderKey, shape, uniforms, value) {
  return {
    shaderKey,
    outputShape: shape,
    dispatchLayout: {x: shape.map((_, i) => i)},
    dispatch: [Math.ceil(shape.reduce((a, b) => a * b, 1) / 256), 1, 1],
    workgroupSize: [256, 1, 1],
    variableNames: [],
    uniforms,
    size: true,
    getUserCode: () => `
  fn pcg(v : u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
  }
  fn main(index : i32) {
    if (index < uniforms.size) {
      let h = pcg(u32(index) ^ pcg(uniforms.seed));
      setOutputAtIndex(index, ${value('(f32(h >> 8u) / 16777216.0 * 2.0 - 1.0)')});
    }
  }`,
  };
}

/**
 * A program filling a float32 tensor of `shape` on the device with hashed values, uniform in
 * ±√3 (variance 1). The seed is a uniform: run it with `hashFillUniforms(seed)`.
 */
export function hashFillProgram(shape) {
  return pcgFillProgram('mlaBenchHashFill', shape, 'seed : u32,', (u) => `${u} * 1.7320508`);
}

export function hashFillUniforms(seed) {
  return [{type: 'uint32', data: [seed >>> 0]}];
}

/**
 * The same hash, uniform in mean ± halfWidth: run it with `uniformFillUniforms(seed, halfWidth,
 * mean)`. tfjs spreads dispatches past 65,535 workgroups over more dimensions.
 */
export function uniformFillProgram(shape) {
  return pcgFillProgram('mlaBenchUniformFill', shape, 'seed : u32, halfWidth : f32, mean : f32,',
                        (u) => `uniforms.mean + ${u} * uniforms.halfWidth`);
}

export function uniformFillUniforms(seed, halfWidth, mean) {
  return [{type: 'uint32', data: [seed >>> 0]}, {type: 'float32', data: [halfWidth]},
          {type: 'float32', data: [mean]}];
}

/**
 * Writes `target[r, :] = source[index[r], :]` (zeros where index[r] < 0) into the existing
 * 2-D-viewable tensor `target` in place (rows of `width` elements; `dtype` float32, or int32
 * for packed 16-bit rows).
 */
export function scatterRowsInPlace(target, source, index, width, dtype = 'float32') {
  const rows = index.shape[0];
  const zero = dtype === 'int32' ? '0' : '0.0';
  const set = dtype === 'int32' ? 'setOutputAtIndexI32' : 'setOutputAtIndex';
  const program = {
    shaderKey: `mlaBenchScatterRows_${width}_${dtype}`,
    outputShape: [rows * width],
    dispatchLayout: {x: [0]},
    dispatch: [Math.ceil(rows * width / 256), 1, 1],
    workgroupSize: [256, 1, 1],
    variableNames: ['source', 'rowIndex'],
    size: true,
    getUserCode: () => `
  fn main(index : i32) {
    if (index < uniforms.size) {
      let row = index / ${width};
      let src = rowIndex[row];
      var value = ${zero};
      if (src >= 0) { value = source[src * ${width} + index % ${width}]; }
      ${set}(index, value);
    }
  }`,
  };
  // The program sees the target as flat [rows·width]: same buffer, another TensorInfo view.
  const flatTarget = {dataId: target.dataId, shape: [rows * width], dtype};
  tf.backend().runWebGPUProgram(program, [source, index], dtype, undefined, flatTarget);
  invalidateCpuCopy(target);
}
