import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {CacheDtype} from '../kernel_names.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';
import {fp8WGSL, fp8WGSLKey} from './fp8_wgsl.js';
import {fp8RowLayout} from '../../precision/fp8.js';
import {joinLines, range, sum, unroll} from './wgsl.js';

/**
 * The WebGPU program of MLAPrefill (contract in ../kernel_names.ts): flash attention over one
 * chunk of decompressed context, with an online softmax and a log-sum-exp column.
 *
 * Work split. A workgroup owns one head and a block of RQ · WG consecutive token rows (RQ =
 * `queriesPerThread`, WG = `threads`); invocation `i` owns the RQ consecutive rows starting
 * at `i · RQ`. Each query row keeps its scaled q (K_nope | k_rope part), its output
 * accumulator, running max and running sum in registers for the whole kernel; the WGSL is
 * generated fully unrolled over the head dims so every q and accumulator component is a named
 * value (no dynamically indexed private arrays).
 *
 * Key loop. The workgroup walks the distinct sequences of its rows one after the other
 * (normally one; ragged batches give two at a block boundary; any order of `tokenInfo` works).
 * For a sequence it stages tiles of KT keys (`tileKeys`) in workgroup memory — the K_nope
 * rows of the head from kvBuffer and the k_rope columns of the keys' cache rows, found
 * through the page table, side by side in `kTile`, the V rows in `vTile` — and every
 * invocation scores its queries against the tile KG keys (`keyGroup`) at a time: one staged
 * vec4 feeds RQ FMAs, the softmax rescale happens once per key group. A query sees the keys
 * `j < clamp(p − firstToken + 1, 0, numRows)` of its own sequence's chunk; others are
 * masked. Rows past the last key any query of the workgroup sees are staged as zeros, so
 * nothing outside the chunk is ever read. Scores live only in registers.
 *
 * Scores are kept in the log2 domain (q is pre-multiplied by scale · log2 e; exp2 instead of
 * exp); the log-sum-exp column is converted back to natural log on output.
 *
 * The params (MLAPrefillParams: the dims and the tiling) make the shader and its key
 * (mlaPrefillShaderKey); the scale is a uniform, the token count a shape.
 */
export interface MLAPrefillTiling {
  /** RQ: query rows per invocation (each staged K/V vec4 is reused this many times). */
  queriesPerThread: number;
  /** WG: invocations per workgroup. */
  threads: number;
  /** KT: keys staged per tile (a multiple of keyGroup). */
  tileKeys: number;
  /** KG: keys per unrolled softmax step. */
  keyGroup: number;
}

export interface MLAPrefillDims {
  /** H */
  numHeads: number;
  /** N: qkNopeHeadDim. */
  nopeDim: number;
  /** R: qkRopeHeadDim. */
  ropeDim: number;
  /** V: vHeadDim. */
  vDim: number;
  /** L (k_rope starts at column L of a cache row). */
  kvLoraRank: number;
  /** How cache rows are stored (default float32; 16-bit values are widened on load). */
  cacheDtype?: CacheDtype;
}

/** What the program's shader depends on: the dims and the tiling. */
export type MLAPrefillParams = MLAPrefillDims&MLAPrefillTiling;

export function mlaPrefillShaderKey(p: MLAPrefillParams): string {
  return `mlaPrefill_H${p.numHeads}_N${p.nopeDim}_R${p.ropeDim}_V${p.vDim}_L${p.kvLoraRank}` +
      `_RQ${p.queriesPerThread}_WG${p.threads}_KT${p.tileKeys}_KG${p.keyGroup}` +
      (p.cacheDtype === 'float8_e4m3fn' ? `_${fp8WGSLKey(fp8RowLayout(p.kvLoraRank, p.ropeDim))}` :
       p.cacheDtype === undefined || p.cacheDtype === 'float32' ? '' : `_${halfWGSLKey(p.cacheDtype)}`);
}

const BYTES_PER_VEC4 = 16;
/** Bytes of workgroup memory besides the tiles (the scheduling scalars), rounded up. */
const SCALAR_BYTES = 64;

/**
 * Picks the tiling for the given dims within `workgroupBytes` of workgroup memory and
 * `maxInvocations` invocations per workgroup.
 *
 * `software`: the adapter runs shaders on the CPU (SwiftShader). There each invocation is a
 * SIMD lane and every load from workgroup or storage memory is a per-lane gather, while values
 * in (spilled) registers are cheap: 8 query rows per invocation reuse each staged vec4 8 times
 * (faster than 4 rows and 4-key groups). A GPU wants the opposite: one query row per
 * invocation and 64 of them per workgroup (on H100/H200 about as fast as tfjs's
 * matMul/softmax composition, where the software tiling's registers spill). The measurements
 * are in bench/README.md (History).
 */
export function chooseMLAPrefillTiling(
    dims: MLAPrefillDims, workgroupBytes: number, maxInvocations: number,
    software: boolean): MLAPrefillTiling {
  const vec4sPerKey = Math.ceil(dims.nopeDim / 4) + Math.ceil(dims.ropeDim / 4) +
      Math.ceil(dims.vDim / 4);
  const bytesPerKey = vec4sPerKey * BYTES_PER_VEC4;
  const keysThatFit = Math.floor((workgroupBytes - SCALAR_BYTES) / bytesPerKey);
  if (keysThatFit < 1) {
    throw new Error(`MLAPrefill webgpu: one key row (${bytesPerKey} bytes) does not fit in ` +
                    `${workgroupBytes} bytes of workgroup memory`);
  }
  const keyGroup = Math.min(2, keysThatFit);
  const tileKeys = Math.min(64, Math.floor(keysThatFit / keyGroup) * keyGroup);
  return software ?
      {queriesPerThread: 8, threads: Math.min(8, maxInvocations), tileKeys, keyGroup} :
      {queriesPerThread: 1, threads: Math.min(64, maxInvocations), tileKeys, keyGroup};
}

export class MLAPrefillProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[], y: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames = ['Q', 'KV', 'cache', 'lookup', 'tokenInfo', 'chunkInfo'];
  uniforms = 'scale : f32,';
  readonly params: MLAPrefillParams;

  /** The program for `numTokens` query rows; its params are `{...dims, ...tiling}`. */
  constructor(numTokens: number, dims: MLAPrefillDims, tiling: MLAPrefillTiling) {
    const params: MLAPrefillParams = {...dims, ...tiling};
    const {numHeads, vDim, queriesPerThread, threads, tileKeys, keyGroup} = params;
    if (tileKeys % keyGroup !== 0) {
      throw new Error(`MLAPrefill webgpu: tileKeys ${tileKeys} is not a multiple of ${keyGroup}`);
    }
    this.params = params;
    this.outputShape = [numTokens, numHeads, vDim + 1];
    this.dispatchLayout = {x: [0], y: [1]};
    this.workgroupSize = [threads, 1, 1];
    const rowsPerWorkgroup = queriesPerThread * threads;
    this.dispatch = [Math.ceil(numTokens / rowsPerWorkgroup), numHeads, 1];
    this.shaderKey = mlaPrefillShaderKey(params);
  }

  getUserCode(): string {
    const {numHeads: H, nopeDim: N, ropeDim: R, vDim: V, kvLoraRank: L, queriesPerThread: RQ,
           threads: WG, tileKeys: KT, keyGroup: KG} = this.params;
    // Widths in vec4s: of K_nope, k_rope, V and a staged key (K_nope | k_rope).
    const nopeVecs = Math.ceil(N / 4);
    const ropeVecs = Math.ceil(R / 4);
    const vVecs = Math.ceil(V / 4);
    const keyVecs = nopeVecs + ropeVecs;
    const rowWidth = L + R;

    // A vec4 of `buf[base + col .. base + col + 3]`, zero past column `width` (compile-time).
    const load4 = (buf: string, base: string, col: number, width: number, scale = '') => {
      const comps = range(4).map((k) => col + k < width ? `${buf}[${base} + ${col + k}]` : '0.0');
      return `vec4<f32>(${comps.join(', ')})${scale}`;
    };
    // Element i of a buffer: a 16-bit cache's values are widened from half of word i / 2.
    const fp8 = this.params.cacheDtype === 'float8_e4m3fn';
    const half = !fp8 && this.params.cacheDtype !== undefined && this.params.cacheDtype !== 'float32';
    const at = (buf: string, i: string) => buf !== 'cache' ? `${buf}[${i}]` :
        fp8 ? `fp8CacheValue((${i}) / ${L + R}, (${i}) % ${L + R})` :
        half ? `halfAt(cache[(${i}) / 2], ((${i}) & 1) == 1)` : `${buf}[${i}]`;
    // A vec4 of `buf[base + c4 * 4 ..]` with a run-time vec4 column c4, zero past `width`.
    const load4Dyn = (buf: string, base: string, width: number) => {
      if (width % 4 === 0) {
        return `vec4<f32>(${range(4).map((k) => at(buf, `${base} + c4 * 4 + ${k}`)).join(', ')})`;
      }
      return `vec4<f32>(${range(4).map((k) =>
          `select(0.0, ${at(buf, `min(${base} + c4 * 4 + ${k}, ${base} + ${width - 1})`)}, ` +
          `c4 * 4 + ${k} < ${width})`).join(', ')})`;
    };
    /** max(…max(a, b)…, z) of the names, left to right. */
    const maxOf = (names: string[]) =>
        names.reduce((acc, n) => acc === '' ? n : `max(${acc}, ${n})`, '');

    // Query row i of the invocation: its token, sequence, visible keys, scaled q and state.
    const queryInit = (i: number) => `
  let t${i} = firstRow + ${i};
  let ok${i} = t${i} < numTokens;
  let tc${i} = min(t${i}, numTokens - 1);
  let b${i} = select(-1, tokenInfo[tc${i} * 3], ok${i});
  let chunk${i} = max(b${i}, 0) * 3;
  let vis${i} = select(0, clamp(tokenInfo[tc${i} * 3 + 1] - chunkInfo[chunk${i} + 1] + 1, 0,
                                 chunkInfo[chunk${i} + 2]), ok${i});
  let qBase${i} = (tc${i} * ${H} + h) * ${N + R};
  ${unroll(nopeVecs, (c) => `let q${i}_${c} = ${load4('Q', `qBase${i}`, 4 * c, N, ' * qScale')};`, '  ')}
  ${unroll(ropeVecs, (c) => `let q${i}_${nopeVecs + c} = ` +
      `${load4('Q', `qBase${i} + ${N}`, 4 * c, R, ' * qScale')};`, '  ')}
  ${unroll(vVecs, (c) => `var o${i}_${c} = vec4<f32>(0.0);`, '  ')}
  var m${i} = START_MAX;
  var l${i} = 0.0;`;

    // One key group: scores of KG keys for the RQ queries, online softmax, P·V.
    const I = '        ';
    const scoreAccs = unroll(RQ, (i) => range(KG).map((u) => `var a${i}_${u} = vec4<f32>(0.0);`), I);
    const scoreFmas = unroll(keyVecs, (c) => unroll(KG, (u) => [
      `{ let k = kTile[kb + ${u * keyVecs + c}];`,
      unroll(RQ, (i) => `  a${i}_${u} = fma(q${i}_${c}, k, a${i}_${u});`, I),
      '}',
    ], I), I);
    const softmax = unroll(RQ, (i) => [
      unroll(KG, (u) => `let s${i}_${u} = select(MASKED, dot(a${i}_${u}, ONE), key0 + ${u} < lim${i});`, I),
      `let mn${i} = max(m${i}, ${maxOf(range(KG).map((u) => `s${i}_${u}`))});`,
      `let al${i} = exp2(m${i} - mn${i});`,
      unroll(KG, (u) => `let p${i}_${u} = exp2(s${i}_${u} - mn${i});`, I),
      `l${i} = l${i} * al${i} + ${sum(range(KG).map((u) => `p${i}_${u}`))};`,
      `m${i} = mn${i};`,
    ], I);
    const pv = unroll(vVecs, (c) => [
      `{`,
      unroll(KG, (u) => `  let v${u} = vTile[vb + ${u * vVecs + c}];`, I),
      unroll(RQ, (i) => `  o${i}_${c} = ${range(KG).reduce(
          (acc, u) => `fma(vec4<f32>(p${i}_${u}), v${u}, ${acc})`, `o${i}_${c} * al${i}`)};`, I),
      `}`,
    ], I);

    const output = (i: number) => `
  if (ok${i}) {
    let outBase = (t${i} * ${H} + h) * ${V + 1};
    if (vis${i} > 0) {
      let inv = 1.0 / l${i};
      ${unroll(vVecs, (c) => range(4).filter((k) => 4 * c + k < V).map((k) =>
          `result[outBase + ${4 * c + k}] = o${i}_${c}[${k}] * inv;`), '      ')}
      result[outBase + ${V}] = (m${i} + log2(l${i})) * LN2;
    } else {
      for (var e = 0; e < ${V}; e++) { result[outBase + e] = 0.0; }
      result[outBase + ${V}] = -uniforms.INFINITY;
    }
  }`;

    return joinLines([half ? halfWGSL(this.params.cacheDtype as 'bfloat16'|'float16') :
                      fp8 ? fp8WGSL(fp8RowLayout(L, R)) : '', `
const START_MAX : f32 = -1.0e30;
const MASKED : f32 = -3.0e38;
const NO_SEQUENCE : i32 = 0x7fffffff;
const LN2 : f32 = 0.6931471805599453;
const ONE : vec4<f32> = vec4<f32>(1.0);

var<workgroup> kTile : array<vec4<f32>, ${KT * keyVecs}>;
var<workgroup> vTile : array<vec4<f32>, ${KT * vVecs}>;
var<workgroup> nextSequence : atomic<i32>;
var<workgroup> maxVisible : atomic<i32>;
var<workgroup> sharedSequence : i32;
var<workgroup> sharedVisible : i32;

fn main() {
  let lid = i32(localId.x);
  let h = i32(workgroupId.y);
  let firstRow = i32(workgroupId.x) * ${RQ * WG} + lid * ${RQ};
  let numTokens = uniforms.qShape.x;
  let pageSize = uniforms.cacheShape.y;
  let maxPages = uniforms.lookupShape.y;
  let qScale = uniforms.scale * 1.4426950408889634;`,
      unroll(RQ, queryInit),
      `
  if (lid == 0) { atomicStore(&nextSequence, NO_SEQUENCE); }
  workgroupBarrier();
  var current = -1;
  loop {
    // The next sequence (in batch-row order) that one of the workgroup's rows sees keys of.
    var candidate = NO_SEQUENCE;
    ${unroll(RQ, (i) => `if (vis${i} > 0 && b${i} > current) { candidate = min(candidate, b${i}); }`, '    ')}
    atomicMin(&nextSequence, candidate);
    workgroupBarrier();
    if (lid == 0) {
      sharedSequence = atomicLoad(&nextSequence);
      atomicStore(&nextSequence, NO_SEQUENCE);
    }
    let seq = workgroupUniformLoad(&sharedSequence);
    if (seq == NO_SEQUENCE) { break; }
    current = seq;
    ${unroll(RQ, (i) => `let lim${i} = select(0, vis${i}, b${i} == seq);`, '    ')}
    let myKeys = ${maxOf(range(RQ).map((i) => `lim${i}`))};
    atomicMax(&maxVisible, myKeys);
    workgroupBarrier();
    if (lid == 0) {
      sharedVisible = atomicLoad(&maxVisible);
      atomicStore(&maxVisible, 0);
    }
    let numKeys = workgroupUniformLoad(&sharedVisible);
    let bufferStart = chunkInfo[seq * 3];
    let firstToken = chunkInfo[seq * 3 + 1];
    let lookupRow = seq * maxPages;

    for (var kt = 0; kt < numKeys; kt += ${KT}) {
      // Stage keys kt .. kt + ${KT} (zeros past numKeys).
      for (var s = lid; s < ${KT * nopeVecs}; s += ${WG}) {
        let j = s / ${nopeVecs};
        let c4 = s % ${nopeVecs};
        var val = vec4<f32>(0.0);
        if (kt + j < numKeys) {
          let base = ((bufferStart + kt + j) * ${H} + h) * ${N + V};
          val = ${load4Dyn('KV', 'base', N)};
        }
        kTile[j * ${keyVecs} + c4] = val;
      }
      for (var s = lid; s < ${KT * ropeVecs}; s += ${WG}) {
        let j = s / ${ropeVecs};
        let c4 = s % ${ropeVecs};
        var val = vec4<f32>(0.0);
        if (kt + j < numKeys) {
          let token = firstToken + kt + j;
          let row = lookup[lookupRow + token / pageSize] * pageSize + token % pageSize;
          let base = row * ${rowWidth} + ${L};
          val = ${load4Dyn('cache', 'base', R)};
        }
        kTile[j * ${keyVecs} + ${nopeVecs} + c4] = val;
      }
      for (var s = lid; s < ${KT * vVecs}; s += ${WG}) {
        let j = s / ${vVecs};
        let c4 = s % ${vVecs};
        var val = vec4<f32>(0.0);
        if (kt + j < numKeys) {
          let base = ((bufferStart + kt + j) * ${H} + h) * ${N + V} + ${N};
          val = ${load4Dyn('KV', 'base', V)};
        }
        vTile[j * ${vVecs} + c4] = val;
      }
      workgroupBarrier();

      let groupEnd = min(${KT}, myKeys - kt);
      for (var g = 0; g < groupEnd; g += ${KG}) {
        let kb = g * ${keyVecs};
        let vb = g * ${vVecs};
        let key0 = kt + g;
        ${scoreAccs}
        ${scoreFmas}
        ${softmax}
        ${pv}
      }
      workgroupBarrier();
    }
  }`,
      unroll(RQ, output),
      `}
`]);
  }
}
