/**
 * Pass 1 of the webgpu MLADecode (flash decoding): the absorbed attention of one token and a
 * block of heads over one split of its context, with an online softmax.
 *
 * Layout of a workgroup (W invocations, HB heads, keys in tiles of KT; registers of V = 4
 * columns (vec4) when D and L are multiples of 4, else V = 1):
 * - Invocation `lane` owns the column registers c_j = lane + j·W (j < DJ = ceil(D/(V·W))).
 *   It keeps q[h, c_j] of all HB heads in registers (pre-scaled by λ·log2 e) for the whole
 *   split.
 * - Per tile it loads its columns of the KT cache rows from storage ONCE into registers and
 *   uses each loaded value for all HB heads: the score partials (HB·KT dot-product pieces)
 *   and then the o_lat update (acc[h, c_j] for c_j < L).
 * - The score partials of the W lanes are summed through workgroup memory (KT·HB·W floats),
 *   and every lane applies the same online-softmax update (running max m and sum l in
 *   base 2) to its own accumulators, so no further exchange is needed.
 * All loops over heads, columns and the keys of a tile are unrolled in the generated WGSL
 * (constant register indices); D, L, W, HB, KT, V and the finalize flag are in the shaderKey.
 *
 * Output: with one split, the finished o_lat [T, H, L]; otherwise per split the partial
 * [T, S, H, L + 2] = (unnormalized o_lat | m | l), merged by MLADecodeReduceProgram.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

/** The static shape of the split program. */
export interface MLADecodeTiling {
  /** W: invocations per workgroup. */
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

/** Columns per register of the split program: 4 (vec4) when D and L allow it, else 1. */
export function decodeVectorWidth(rowWidth: number, latentDim: number): number {
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
 * 18 vec4 registers of the row each, and only as many workgroups as threads. Measured at
 * DeepSeek-V2-Lite sizes (H=16, L=512, R=64, one token, context 2048, 2 cores, Node,
 * `node bench/tune_decode.mjs`): W=8/KT=4 with 2 splits 30 ms per call; W=16 36 ms,
 * W=4 39 ms, KT=8 39 ms, HB=8 36 ms; 16 splits (the GPU plan) 42 ms.
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

/** WGSL for `terms` summed (a 0.0 literal when empty). */
function sum(terms: string[]): string {
  return terms.length === 0 ? '0.0' : terms.join(' + ');
}

export class MLADecodeSplitProgram implements WebGPUProgram {
  variableNames = ['q', 'cache', 'lookup', 'tokenInfo'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = 'scaleLog2 : f32, chunk : i32, numSplits : i32, numHeadBlocks : i32,';
  private readonly plan: MLADecodePlan;
  private readonly rowWidth: number;
  private readonly latentDim: number;
  private readonly finalize: boolean;
  /** Columns per register: 4 (vec4 loads and math) when D and L are multiples of 4, else 1. */
  private readonly vectorWidth: number;
  variableComponents: number[];

  /**
   * `qShape` [T, H, D]; `latentDim` L. With `plan.numSplits == 1` the program writes the
   * normalized o_lat [T, H, L] itself; otherwise partials [T, S, H, L + 2].
   */
  constructor(qShape: number[], latentDim: number, plan: MLADecodePlan) {
    const [numTokens, numHeads, rowWidth] = qShape;
    this.plan = plan;
    this.rowWidth = rowWidth;
    this.latentDim = latentDim;
    this.finalize = plan.numSplits === 1;
    this.vectorWidth = decodeVectorWidth(rowWidth, latentDim);
    this.variableComponents = [this.vectorWidth, this.vectorWidth, 1, 1];
    this.outputShape = this.finalize ? [numTokens, numHeads, latentDim] :
                                       [numTokens, plan.numSplits, numHeads, latentDim + 2];
    this.dispatchLayout = flatLayout(this.outputShape.length);
    this.workgroupSize = [plan.workgroupSize, 1, 1];
    this.dispatch = [numTokens * plan.numHeadBlocks * plan.numSplits, 1, 1];
    this.shaderKey = `mlaDecodeSplit_D${rowWidth}_L${latentDim}_W${plan.workgroupSize}` +
        `_HB${plan.headsPerBlock}_KT${plan.keysPerTile}_V${this.vectorWidth}` +
        `_${this.finalize ? 'final' : 'partial'}`;
  }

  getUserCode(): string {
    const W = this.plan.workgroupSize;
    const HB = this.plan.headsPerBlock;
    const KT = this.plan.keysPerTile;
    const V = this.vectorWidth;
    // Row and latent widths in registers of V columns.
    const Dv = this.rowWidth / V;
    const Lv = this.latentDim / V;
    const DJ = Math.ceil(Dv / W);
    const LJ = Math.ceil(Lv / W);
    const heads = [...Array(HB).keys()];
    const keys = [...Array(KT).keys()];
    const rowCols = [...Array(DJ).keys()];
    const latentCols = [...Array(LJ).keys()];
    const vtype = V === 1 ? 'f32' : `vec${V}<f32>`;
    const zero = V === 1 ? '0.0' : `${vtype}(0.0)`;
    const dot = (a: string, b: string) => V === 1 ? `${a} * ${b}` : `dot(${a}, ${b})`;
    // Registers lane + j·W of the last j may run past Dv (or Lv): guarded there only.
    const partialD = (j: number) => (j + 1) * W > Dv;
    const partialL = (j: number) => (j + 1) * W > Lv;
    const load = (array: string, start: string, j: number) => partialD(j) ?
        `select(${zero}, ${array}[${start} + min(col${j}, ${Dv - 1})], col${j} < ${Dv})` :
        `${array}[${start} + col${j}]`;
    /** Stores register `value` (V columns) at column register `j` of the row at `outRow`. */
    const store = (j: number, value: string) => {
      const stores = V === 1 ? [`result[outRow + col${j}] = ${value};`] :
          [...Array(V).keys()].map(
              (i) => `result[outRow + ${V} * col${j} + ${i}] = ${value}[${i}];`);
      const body = stores.join(' ');
      return partialL(j) ? `        if (col${j} < ${Lv}) { ${body} }` : `        ${body}`;
    };

    const lines: string[] = [];
    const emit = (line: string) => lines.push(line);

    // Head h of the block is owned by lane h % W (HJ heads per lane): the owner sums its
    // heads' score partials, runs their online softmax (running max m and sum l, base 2) and
    // publishes the tile's weights p and the rescale factor; every lane then applies them to
    // its own columns. Slots of heads past HB (HB % W ≠ 0) compute a clamped head and are
    // never read.
    const HJ = Math.ceil(HB / W);
    const ownedHeads = [...Array(HJ).keys()];
    const slots = HJ * W;
    emit(`
    var<workgroup> partials : array<f32, ${KT * HB * W}>;
    var<workgroup> weights : array<f32, ${KT * slots}>;
    var<workgroup> rescale : array<f32, ${slots}>;
    var<workgroup> keyRange : vec2<i32>;

    ${mainHeader('index')} {
      let lane = i32(localIndex);
      // A dispatch wider than 65535 workgroups is folded into y/z with spare workgroups at
      // the end: they get no keys and write nothing.
      let numWorkgroups = uniforms.qShape.x * uniforms.numHeadBlocks * uniforms.numSplits;
      let valid = index / ${W} < numWorkgroups;
      let workgroup = min(index / ${W}, numWorkgroups - 1);
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
`);
    for (const j of rowCols) emit(`      let col${j} = lane + ${j * W};`);
    for (const i of ownedHeads) {
      emit(`      let ownSlot${i} = lane + ${i * W};`);
      emit(`      let ownHead${i} = min(ownSlot${i}, ${HB - 1});`);
      emit(`      var ownM${i} = -3.0e38;`);
      emit(`      var ownL${i} = 0.0;`);
    }
    for (const h of heads) {
      emit(`      let qRow${h} = (token * numHeads + min(h0 + ${h}, numHeads - 1)) * ${Dv};`);
      for (const j of rowCols) {
        emit(`      let q${h}_${j} = ${load('q', `qRow${h}`, j)} * uniforms.scaleLog2;`);
      }
      for (const j of latentCols) emit(`      var acc${h}_${j} = ${zero};`);
    }

    // The tile loop has no branches: SwiftShader runs a branch as masked code over both
    // sides and keeps the variables it writes in memory (a guarded rescale of the
    // accumulators cost a third of the kernel). Keys past the range re-read the range's
    // last row and get a score of -3e38 (weight 0).
    emit(`
      for (var k0 = range.x; k0 < range.y; k0 += ${KT}) {`);
    for (const k of keys) {
      emit(`
        let key${k} = min(k0 + ${k}, range.y - 1);
        let page${k} = lookup[lookupStart + key${k} / pageSize];
        let rowStart${k} = (page${k} * pageSize + key${k} % pageSize) * ${Dv};`);
      for (const j of rowCols) emit(`        let r${k}_${j} = ${load('cache', `rowStart${k}`, j)};`);
      for (const h of heads) {
        const terms = rowCols.map((j) => dot(`q${h}_${j}`, `r${k}_${j}`));
        emit(`        partials[${(k * HB + h) * W} + lane] = ${sum(terms)};`);
      }
    }
    emit(`
        workgroupBarrier();`);
    for (const i of ownedHeads) {
      emit(`
        {`);
      for (const k of keys) {
        const terms = [...Array(W).keys()].map((w) => `partials[(${k * HB} + ownHead${i}) * ${W} + ${w}]`);
        emit(`          let s${k} = select(-3.0e38, ${terms.join(' + ')}, k0 + ${k} < range.y);`);
      }
      const maxExpr = keys.reduce((acc, k) => `max(${acc}, s${k})`, `ownM${i}`);
      emit(`          let mNew = ${maxExpr};`);
      emit(`          let corr = exp2(ownM${i} - mNew);`);
      for (const k of keys) emit(`          let p${k} = exp2(s${k} - mNew);`);
      emit(`          ownL${i} = ownL${i} * corr + ${sum(keys.map((k) => `p${k}`))};`);
      emit(`          ownM${i} = mNew;`);
      emit(`          rescale[ownSlot${i}] = corr;`);
      for (const k of keys) emit(`          weights[${k * slots} + ownSlot${i}] = p${k};`);
      emit(`        }`);
    }
    emit(`
        workgroupBarrier();`);
    for (const h of heads) {
      emit(`
        {`);
      emit(`          let corr = rescale[${h}];`);
      for (const k of keys) emit(`          let p${k} = weights[${k * slots + h}];`);
      for (const j of latentCols) {
        emit(`          acc${h}_${j} = acc${h}_${j} * corr + ` +
             `${sum(keys.map((k) => `p${k} * r${k}_${j}`))};`);
      }
      emit(`        }`);
    }
    emit(`
      }`);

    // Output. Once every lane has used the last tile's weights, the owners publish their
    // heads' softmax statistics (rescale holds m, weights l).
    emit(`
      workgroupBarrier();`);
    for (const i of ownedHeads) {
      emit(`      rescale[ownSlot${i}] = ownM${i};`);
      emit(`      weights[ownSlot${i}] = ownL${i};`);
    }
    emit(`
      workgroupBarrier();
      if (!valid) {
        return;
      }`);
    for (const h of heads) {
      emit(`
      if (h0 + ${h} < numHeads) {`);
      if (this.finalize) {
        emit(`        let outRow = (token * numHeads + h0 + ${h}) * ${this.latentDim};`);
        emit(`        let inverseSum = select(0.0, 1.0 / weights[${h}], weights[${h}] > 0.0);`);
        for (const j of latentCols) emit(store(j, `(acc${h}_${j} * inverseSum)`));
      } else {
        emit(`        let outRow = ((token * uniforms.numSplits + split) * numHeads + h0 + ${h}) * ` +
             `${this.latentDim + 2};`);
        for (const j of latentCols) emit(store(j, `acc${h}_${j}`));
        emit(`        if (lane == 0) {`);
        emit(`          result[outRow + ${this.latentDim}] = rescale[${h}];`);
        emit(`          result[outRow + ${this.latentDim + 1}] = weights[${h}];`);
        emit(`        }`);
      }
      emit(`      }`);
    }
    emit(`    }`);
    return lines.join('\n');
  }
}
