/**
 * Pass 1 of the webgpu MLADecode (flash decoding): the absorbed attention of one token and a
 * block of heads over one split of its context, with an online softmax.
 *
 * Layout of a workgroup (WG invocations, HB heads, keys in tiles of KT; registers of VW = 4
 * columns (vec4) when D and L are multiples of 4, else VW = 1):
 * - Invocation `lane` owns the column registers c_j = lane + j·WG (j < DJ = ceil(D/(VW·WG))).
 *   It keeps q[h, c_j] of all HB heads in registers (pre-scaled by λ·log2 e) for the whole
 *   split.
 * - Per tile it loads its columns of the KT cache rows from storage ONCE into registers and
 *   uses each loaded value for all HB heads: the score partials (HB·KT dot-product pieces)
 *   and then the o_lat update (acc[h, c_j] for c_j < L).
 * - The score partials of the WG lanes are summed through workgroup memory (KT·HB·WG floats),
 *   and every lane applies the same online-softmax update (running max m and sum l in
 *   base 2) to its own accumulators, so no further exchange is needed.
 * All loops over heads, columns and the keys of a tile are unrolled in the generated WGSL
 * (constant register indices). The params (MLADecodeSplitParams: the tiling, D, L, VW and
 * whether the program finalizes) make the shader and its key (mlaDecodeSplitShaderKey); the
 * scale, the chunk and the split and head-block counts are uniforms.
 *
 * Output: with one split, the finished o_lat [T, H, L]; otherwise per split the partial
 * [T, S, H, L + 2] = (unnormalized o_lat | m | l), merged by MLADecodeReduceProgram.
 */
import type {CacheDtype} from '../kernel_names.js';
import type {HalfDtype} from '../../precision/half.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';
import {fp8WGSL, fp8WGSLKey} from './fp8_wgsl.js';
import type {Fp8RowLayout} from '../../precision/fp8.js';
import {cacheFp8Layout} from '../layouts.js';
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';
import {range, sum, unroll} from './wgsl.js';

/** The static shape of the split program. */
export interface MLADecodeTiling {
  /** WG: invocations per workgroup. */
  workgroupSize: number;
  /** HB: heads per workgroup. */
  headsPerBlock: number;
  /** KT: keys per tile (one barrier pair per tile). */
  keysPerTile: number;
}

/** The tiling plus how the work is split over workgroups. */
export interface MLADecodePlan extends MLADecodeTiling {
  numHeadBlocks: number;
  /** S: splits of the context; keys [s·chunk, (s+1)·chunk) go to split s (the last takes the rest). */
  numSplits: number;
  chunk: number;
}

/** Below this many keys per split, splitting further costs more (partials, reduce) than it gains. */
const MIN_KEYS_PER_SPLIT = 128;
const MAX_SPLITS = 64;
/** Enough workgroups to keep a GPU (or SwiftShader's threads) busy. */
const TARGET_WORKGROUPS = 64;
const MAX_HEADS_PER_BLOCK = 16;
/** Workgroup memory for the score partials (of the 16 KiB WebGPU guarantees). */
const PARTIAL_BYTES = 8192;

/** What setMLADecodeTiling can override: the tiling and how many splits are made. */
export type MLADecodeTilingOverride =
    Partial<MLADecodeTiling&{minKeysPerSplit: number, targetWorkgroups: number}>;

let tilingOverride: MLADecodeTilingOverride = {};

/** Overrides the automatic choice (for benchmarks and tests); `{}` restores it. */
export function setMLADecodeTiling(override: MLADecodeTilingOverride): void {
  tilingOverride = {...override};
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** VW, columns per register of the split program: 4 (vec4) when D and L allow it, else 1. */
export function decodeVectorWidth(rowWidth: number, latentDim: number): 1|4 {
  return rowWidth % 4 === 0 && latentDim % 4 === 0 ? 4 : 1;
}

/**
 * Chooses the tiling from the shapes and `maxContextLength` (host-side numbers only).
 * `limits` are the device's workgroup limits; `software` says the adapter runs shaders on the
 * CPU (SwiftShader), where `threads` workgroups run at a time.
 *
 * On a GPU: ~9 vec4 registers of the row per lane, all heads (≤ 16) in one workgroup and
 * enough splits of the context for TARGET_WORKGROUPS workgroups.
 *
 * On SwiftShader a workgroup's invocations run 4 per SIMD group (Subzero JIT), every barrier
 * switches between the groups, and each workgroup has a large fixed cost, so: 8 lanes with
 * 18 vec4 registers of the row each, and only as many workgroups as threads. At
 * DeepSeek-V2-Lite sizes (`node bench/tune_decode.mjs`) that plan beat wider and narrower
 * workgroups, longer tiles, smaller head blocks and the GPU plan's splits; the measurements
 * are in bench/README.md (History).
 */
export function planMLADecode(
    numTokens: number, numHeads: number, rowWidth: number, latentDim: number,
    maxContextLength: number, limits: {invocations: number, storageBytes: number},
    software = false, threads = 4): MLADecodePlan {
  const o = tilingOverride;
  const maxInvocations = Math.min(limits.invocations, 256);
  const registersPerRow = rowWidth / decodeVectorWidth(rowWidth, latentDim);
  const registersPerLane = software ? 18 : 9;
  const workgroupSize = Math.min(
      o.workgroupSize ??
          Math.min(64, Math.max(4, nextPowerOfTwo(Math.ceil(registersPerRow / registersPerLane)))),
      maxInvocations);
  const numHeadBlocks =
      Math.ceil(numHeads / Math.min(o.headsPerBlock ?? MAX_HEADS_PER_BLOCK, numHeads));
  const headsPerBlock = Math.ceil(numHeads / numHeadBlocks);
  const partialFloats = Math.min(PARTIAL_BYTES, limits.storageBytes / 2) / 4;
  const keysPerTile = Math.max(1, Math.min(
      o.keysPerTile ?? (headsPerBlock > 8 ? 4 : 8),
      Math.floor(partialFloats / (headsPerBlock * workgroupSize))));

  const context = Math.max(1, maxContextLength);
  const targetWorkgroups = o.targetWorkgroups ?? (software ? Math.max(1, threads) : TARGET_WORKGROUPS);
  const bySize = Math.ceil(context / (o.minKeysPerSplit ?? MIN_KEYS_PER_SPLIT));
  const byOccupancy = Math.ceil(targetWorkgroups / Math.max(1, numTokens * numHeadBlocks));
  let numSplits = Math.max(1, Math.min(bySize, byOccupancy, MAX_SPLITS));
  const chunk = Math.ceil(Math.ceil(context / numSplits) / keysPerTile) * keysPerTile;
  numSplits = Math.ceil(context / chunk);
  return {workgroupSize, headsPerBlock, keysPerTile, numHeadBlocks, numSplits, chunk};
}

/** What the split program's shader depends on: the tiling, the row shape, VW and the output. */
export interface MLADecodeSplitParams extends MLADecodeTiling {
  /** D: the width of q's rows and of a cache row (L + R). */
  rowWidth: number;
  /** L: the latent columns of a row, the width of o_lat. */
  latentDim: number;
  /** VW: columns per register (decodeVectorWidth). */
  vectorWidth: 1|4;
  /** One split: write the normalized o_lat [T, H, L] instead of partials [T, S, H, L + 2]. */
  finalize: boolean;
  /** How cache rows are stored (16-bit or FP8: widened on load). */
  cacheDtype: CacheDtype;
  /** The FP8 row layout (null unless cacheDtype is float8_e4m3fn). */
  fp8: Fp8RowLayout|null;
}

/** The split program's params for a plan and the shapes it was made for. */
export function mlaDecodeSplitParams(plan: MLADecodePlan, rowWidth: number, latentDim: number,
                                     cacheDtype: CacheDtype = 'float32'): MLADecodeSplitParams {
  return {
    workgroupSize: plan.workgroupSize,
    headsPerBlock: plan.headsPerBlock,
    keysPerTile: plan.keysPerTile,
    rowWidth,
    latentDim,
    vectorWidth: decodeVectorWidth(rowWidth, latentDim),
    finalize: plan.numSplits === 1,
    cacheDtype,
    fp8: cacheFp8Layout(cacheDtype, latentDim, rowWidth - latentDim),
  };
}

export function mlaDecodeSplitShaderKey(p: MLADecodeSplitParams): string {
  return `mlaDecodeSplit_D${p.rowWidth}_L${p.latentDim}_WG${p.workgroupSize}` +
      `_HB${p.headsPerBlock}_KT${p.keysPerTile}_VW${p.vectorWidth}` +
      `_${p.finalize ? 'final' : 'partial'}` +
      (p.fp8 !== null ? `_${fp8WGSLKey(p.fp8)}` :
       p.cacheDtype === 'float32' ? '' : `_${halfWGSLKey(p.cacheDtype as HalfDtype)}`);
}

export class MLADecodeSplitProgram implements WebGPUProgram {
  variableNames = ['q', 'cache', 'lookup', 'tokenInfo'];
  variableComponents: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = 'scaleLog2 : f32, chunk : i32, numSplits : i32, numHeadBlocks : i32,';
  readonly params: MLADecodeSplitParams;

  /**
   * `qShape` [T, H, D]; `split`: the plan's head blocks and splits (the dispatch). With
   * `params.finalize` (one split) the program writes the normalized o_lat [T, H, L] itself;
   * otherwise partials [T, S, H, L + 2].
   */
  constructor(params: MLADecodeSplitParams, qShape: number[],
              split: Pick<MLADecodePlan, 'numHeadBlocks'|'numSplits'>) {
    const [numTokens, numHeads, rowWidth] = qShape;
    if (rowWidth !== params.rowWidth || params.finalize !== (split.numSplits === 1)) {
      throw new Error(`MLADecodeSplitProgram: params (D ${params.rowWidth}, finalize ` +
                      `${params.finalize}) do not fit q [${qShape}] and ${split.numSplits} splits`);
    }
    const {latentDim, vectorWidth} = params;
    this.params = params;
    // A 16-bit cache is read as words: VW = 4 values are 2 words (a vec2<i32>).
    // FP8 rows are read word by word (scalar i32).
    const cacheComponents = params.fp8 !== null ? 1 : params.cacheDtype === 'float32' ? vectorWidth :
                                                                                     vectorWidth / 2 || 1;
    this.variableComponents = [vectorWidth, vectorWidth === 4 ? cacheComponents : 1, 1, 1];
    this.outputShape = params.finalize ? [numTokens, numHeads, latentDim] :
                                         [numTokens, split.numSplits, numHeads, latentDim + 2];
    this.dispatchLayout = flatLayout(this.outputShape.length);
    this.workgroupSize = [params.workgroupSize, 1, 1];
    this.dispatch = [numTokens * split.numHeadBlocks * split.numSplits, 1, 1];
    this.shaderKey = mlaDecodeSplitShaderKey(params);
  }

  getUserCode(): string {
    const {workgroupSize: WG, headsPerBlock: HB, keysPerTile: KT, vectorWidth: VW, latentDim,
           finalize} = this.params;
    // Row and latent widths in registers of VW columns; a lane's registers lane + j·WG,
    // j < DJ of a row (LJ of its latent part).
    const rowVecs = this.params.rowWidth / VW;
    const latentVecs = latentDim / VW;
    const DJ = Math.ceil(rowVecs / WG);
    const LJ = Math.ceil(latentVecs / WG);
    const vtype = VW === 1 ? 'f32' : `vec${VW}<f32>`;
    const zero = VW === 1 ? '0.0' : `${vtype}(0.0)`;
    const dot = (a: string, b: string) => VW === 1 ? `${a} * ${b}` : `dot(${a}, ${b})`;
    // Registers lane + j·WG of the last j may run past rowVecs (or latentVecs): guarded there
    // only.
    const partialD = (j: number) => (j + 1) * WG > rowVecs;
    const partialL = (j: number) => (j + 1) * WG > latentVecs;
    // Register i of a row: q's own, or the cache's widened from 16 bits (VW = 4: one vec2 of
    // words; VW = 1: one half of word i / 2).
    const fp8 = this.params.fp8;
    const half = fp8 === null && this.params.cacheDtype !== 'float32';
    const element = (array: string, i: string) => array !== 'cache' || (!half && fp8 === null) ? `${array}[${i}]` :
        fp8 !== null ? (VW === 4 ? `fp8CacheVec4((${i}) / ${rowVecs}, ((${i}) % ${rowVecs}) * 4)` :
                                   `fp8CacheValue((${i}) / ${rowVecs}, (${i}) % ${rowVecs})`) :
        VW === 4 ? `vec4<f32>(unpackHalf2(cache[${i}].x), unpackHalf2(cache[${i}].y))` :
                   `halfAt(cache[(${i}) / 2], ((${i}) & 1) == 1)`;
    const load = (array: string, start: string, j: number) => partialD(j) ?
        `select(${zero}, ${element(array, `${start} + min(col${j}, ${rowVecs - 1})`)}, col${j} < ${rowVecs})` :
        element(array, `${start} + col${j}`);
    /** Stores register `value` (VW columns) at column register `j` of the row at `outRow`. */
    const store = (j: number, value: string) => {
      const stores = (indent: string) => VW === 1 ? `result[outRow + col${j}] = ${value};` :
          unroll(VW, (i) => `result[outRow + ${VW} * col${j} + ${i}] = ${value}[${i}];`, indent);
      return partialL(j) ? `if (col${j} < ${latentVecs}) {
          ${stores('          ')}
        }` : stores('        ');
    };

    // Head h of the block is owned by lane h % WG (HJ heads per lane): the owner sums its
    // heads' score partials, runs their online softmax (running max m and sum l, base 2) and
    // publishes the tile's weights p and the rescale factor; every lane then applies them to
    // its own columns. Slots of heads past HB (HB % WG ≠ 0) compute a clamped head and are
    // never read.
    const HJ = Math.ceil(HB / WG);
    const slots = HJ * WG;
    const setup = `${half ? halfWGSL(this.params.cacheDtype as HalfDtype) : fp8 !== null ? fp8WGSL(fp8) : ''}
    var<workgroup> partials : array<f32, ${KT * HB * WG}>;
    var<workgroup> weights : array<f32, ${KT * slots}>;
    var<workgroup> rescale : array<f32, ${slots}>;
    var<workgroup> keyRange : vec2<i32>;

    ${mainHeader('index')} {
      let lane = i32(localIndex);
      // A dispatch wider than 65535 workgroups is folded into y/z with spare workgroups at
      // the end: they get no keys and write nothing.
      let numWorkgroups = uniforms.qShape.x * uniforms.numHeadBlocks * uniforms.numSplits;
      let valid = index / ${WG} < numWorkgroups;
      let workgroup = min(index / ${WG}, numWorkgroups - 1);
      let split = workgroup % uniforms.numSplits;
      let rest = workgroup / uniforms.numSplits;
      let headBlock = rest % uniforms.numHeadBlocks;
      let token = rest / uniforms.numHeadBlocks;
      let numHeads = uniforms.qShape.y;
      let h0 = headBlock * ${HB};
      let batchRow = tokenInfo[token * 3];
      let position = tokenInfo[token * 3 + 1];
      let pageSize = uniforms.cacheShape.y;
      let lookupStart = batchRow * uniforms.lookupShape.y;
      if (lane == 0) {
        let kStart = split * uniforms.chunk;
        // The last split takes every remaining key, also past maxContextLength.
        let kEnd = select(min(kStart + uniforms.chunk, position + 1), position + 1,
                          split == uniforms.numSplits - 1);
        keyRange = select(vec2<i32>(0, 0), vec2<i32>(kStart, kEnd), valid);
      }
      let range = workgroupUniformLoad(&keyRange);
      ${unroll(DJ, (j) => `let col${j} = lane + ${j * WG};`, '      ')}
      ${unroll(HJ, (i) => [
        `let ownSlot${i} = lane + ${i * WG};`,
        `let ownHead${i} = min(ownSlot${i}, ${HB - 1});`,
        `var ownM${i} = -3.0e38;`,
        `var ownL${i} = 0.0;`,
      ], '      ')}
      ${unroll(HB, (h) => [
        `let qRow${h} = (token * numHeads + min(h0 + ${h}, numHeads - 1)) * ${rowVecs};`,
        unroll(DJ, (j) => `let q${h}_${j} = ${load('q', `qRow${h}`, j)} * uniforms.scaleLog2;`,
               '      '),
        unroll(LJ, (j) => `var acc${h}_${j} = ${zero};`, '      '),
      ], '      ')}`;

    // Per key of the tile: its cache row's registers, loaded once, and its score partials for
    // every head.
    const loadKey = (k: number) => [
      `let key${k} = min(k0 + ${k}, range.y - 1);`,
      `let page${k} = lookup[lookupStart + key${k} / pageSize];`,
      `let rowStart${k} = (page${k} * pageSize + key${k} % pageSize) * ${rowVecs};`,
      unroll(DJ, (j) => `let r${k}_${j} = ${load('cache', `rowStart${k}`, j)};`, '        '),
      unroll(HB, (h) => `partials[${(k * HB + h) * WG} + lane] = ` +
          `${sum(range(DJ).map((j) => dot(`q${h}_${j}`, `r${k}_${j}`)))};`, '        '),
    ];
    // The owner of slot i: the tile's scores of its head and its online-softmax step.
    const ownerStep = (i: number) => `{
          ${unroll(KT, (k) => `let s${k} = select(-3.0e38, ` +
              `${sum(range(WG).map((w) => `partials[(${k * HB} + ownHead${i}) * ${WG} + ${w}]`))}, ` +
              `k0 + ${k} < range.y);`, '          ')}
          let mNew = ${range(KT).reduce((acc, k) => `max(${acc}, s${k})`, `ownM${i}`)};
          let corr = exp2(ownM${i} - mNew);
          ${unroll(KT, (k) => `let p${k} = exp2(s${k} - mNew);`, '          ')}
          ownL${i} = ownL${i} * corr + ${sum(range(KT).map((k) => `p${k}`))};
          ownM${i} = mNew;
          rescale[ownSlot${i}] = corr;
          ${unroll(KT, (k) => `weights[${k * slots} + ownSlot${i}] = p${k};`, '          ')}
        }`;
    // Every lane: head h's accumulators of its columns, rescaled, plus the tile's weighted rows.
    const accumulate = (h: number) => `{
          let corr = rescale[${h}];
          ${unroll(KT, (k) => `let p${k} = weights[${k * slots + h}];`, '          ')}
          ${unroll(LJ, (j) => `acc${h}_${j} = acc${h}_${j} * corr + ` +
              `${sum(range(KT).map((k) => `p${k} * r${k}_${j}`))};`, '          ')}
        }`;
    // The tile loop has no branches: SwiftShader runs a branch as masked code over both
    // sides and keeps the variables it writes in memory (a guarded rescale of the
    // accumulators made the whole kernel markedly slower). Keys past the range re-read the
    // range's last row and get a score of -3e38 (weight 0).
    const tileLoop = `
      for (var k0 = range.x; k0 < range.y; k0 += ${KT}) {
        ${unroll(KT, loadKey, '        ')}
        workgroupBarrier();
        ${unroll(HJ, ownerStep, '        ')}
        workgroupBarrier();
        ${unroll(HB, accumulate, '        ')}
      }`;

    // Output. Once every lane has used the last tile's weights, the owners publish their
    // heads' softmax statistics (rescale holds m, weights l).
    const writeHead = (h: number) => finalize ? `
      if (h0 + ${h} < numHeads) {
        let outRow = (token * numHeads + h0 + ${h}) * ${latentDim};
        let inverseSum = select(0.0, 1.0 / weights[${h}], weights[${h}] > 0.0);
        ${unroll(LJ, (j) => store(j, `(acc${h}_${j} * inverseSum)`), '        ')}
      }` : `
      if (h0 + ${h} < numHeads) {
        let outRow = ((token * uniforms.numSplits + split) * numHeads + h0 + ${h}) * ${latentDim + 2};
        ${unroll(LJ, (j) => store(j, `acc${h}_${j}`), '        ')}
        if (lane == 0) {
          result[outRow + ${latentDim}] = rescale[${h}];
          result[outRow + ${latentDim + 1}] = weights[${h}];
        }
      }`;
    const output = `
      workgroupBarrier();
      ${unroll(HJ, (i) => [`rescale[ownSlot${i}] = ownM${i};`, `weights[ownSlot${i}] = ownL${i};`],
               '      ')}
      workgroupBarrier();
      if (!valid) {
        return;
      }${unroll(HB, writeHead)}
    }`;
    return `${setup}
${tileLoop}
${output}`;
  }
}
