/**
 * MLALinear's program: y = x · wᵀ for any M, with every partial sum in registers (no
 * workgroup memory, no barrier):
 *
 * - invocation i owns a block of MB rows of x (MB = M when M ≤ 8, else 8) and NB consecutive
 *   rows of w (output columns), and walks K with vec4 loads (VW = 4; scalar loads, VW = 1,
 *   when a stride or K is not a multiple of 4): per step MB + NB loads and MB·NB dot products,
 *   unrolled into named registers;
 * - consecutive invocations take consecutive row blocks of the same rows of w, so a
 *   workgroup reads its NB rows of w once from memory for all of them;
 * - a batch dim G (one product per entry, e.g. per head) is one dispatch for all entries.
 *
 * Reads and writes go through strides (uniforms), so the layer's products read their inputs
 * and write their outputs where they live, with no split, concat or transpose around them:
 * - `secondWeight`: output columns [N1, N1 + N2) come from a second weight (MAX's wqkv:
 *   q_proj or q_a_proj, then kv_a_proj_with_mqa, without a concatenated copy);
 * - `rmsNorm`: each x row is RMS-normalized and scaled by gamma on the fly (q-LoRA's
 *   q_a_layernorm before q_b_proj);
 * - `residual`: a tensor of the output's shape is added as each value is written (a decoder's
 *   residual stream);
 * - `ropeTail`: after the linear invocations, one invocation per (token, head, rope column)
 *   writes the roped q_rope next to the product (FusedRope's absorbed query [T, H, L + R]).
 *
 * The params (MB, NB, WG, VW, the three variant bits) make the shader and its key
 * (linearShaderKey); every size and stride is a uniform.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';
import {ropePairWGSL} from './rope_wgsl.js';
import {unroll} from './wgsl.js';
import type {LinearLayout} from '../layouts.js';
import type {WeightDtype} from '../kernel_names.js';
import type {HalfDtype} from '../../precision/half.js';
import {halfWGSL, halfWGSLKey} from './half_wgsl.js';

/** Rows of x one invocation multiplies (all of them up to this many). */
export const MAX_ROWS_PER_INVOCATION = 8;

export interface LinearProgramParams {
  /** MB: rows of x per invocation. */
  rowsPerInvocation: number;
  /** NB: rows of w (output columns) per invocation. */
  colsPerInvocation: number;
  /** WG: invocations per workgroup. */
  workgroupSize: number;
  /** VW = 4: vec4 loads along K (K and every x stride are multiples of 4); else 1. */
  vectorWidth: 1|4;
  secondWeight: boolean;
  rmsNorm: boolean;
  /** Add the `residual` input (the output's shape) to every value written. */
  residual: boolean;
  /** Rope the q_rope columns into the output after the product (null: no tail). */
  ropeTail: null|{interleaved: boolean};
  /** How w (and w2) store their values: float32, or 16-bit packed two per int32 word. */
  weightDtype: WeightDtype;
}

/**
 * Where a product reads and writes (elements; see LinearLayout), plus the RMSNorm epsilon and
 * the rope tail: the source q_rope of (t, h) at t·srcRowStride + h·srcHeadStride + srcOffset,
 * written at column dstOffset of output row (t, h).
 */
export type LinearGeometry = Omit<LinearLayout, 'outputShape'>&{
  eps: number,
  tail: null|{ropeDim: number, srcRowStride: number, srcHeadStride: number, srcOffset: number,
              dstOffset: number},
};

export function linearShaderKey(p: LinearProgramParams): string {
  const tail = p.ropeTail === null ? '' : p.ropeTail.interleaved ? '_ropeIl' : '_ropeHalf';
  return `mlaLinear_MB${p.rowsPerInvocation}_NB${p.colsPerInvocation}_WG${p.workgroupSize}` +
      `_VW${p.vectorWidth}${p.secondWeight ? '_w2' : ''}${p.rmsNorm ? '_norm' : ''}${p.residual ? '_res' : ''}${tail}` +
      (p.weightDtype === 'float32' ? '' : `_w${halfWGSLKey(p.weightDtype)}`);
}

/** The vector width for a geometry: 4 when K and every x stride are multiples of 4. */
export function linearVectorWidth(g: Pick<LinearGeometry, 'k'|'xEntryStride'|'xRowStride'>): 1|4 {
  return g.k % 4 === 0 && g.xEntryStride % 4 === 0 && g.xRowStride % 4 === 0 ? 4 : 1;
}

/**
 * Default NB: 8 for M ≤ 2 and M > 8, else 4 (tuned with bench/tune_linear.mjs); with a second
 * weight, the largest power of two ≤ that dividing N1, so no invocation straddles the weights.
 */
export function defaultColsPerInvocation(m: number, splitCol: number|null): number {
  let r = m <= 2 || m > MAX_ROWS_PER_INVOCATION ? 8 : 4;
  if (splitCol !== null) while (splitCol % r !== 0) r /= 2;
  return r;
}

const UNIFORMS = [
  'kVecs', 'numRows', 'numCols', 'splitCol', 'numRowBlocks', 'perEntry', 'numEntries',
  'xEntryStride', 'xRowStride', 'outEntryStride', 'outRowStride', 'tailCount',
  'tailSrcRowStride', 'tailSrcHeadStride', 'tailSrcOffset', 'tailDstOffset',
] as const;

export class LinearProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = UNIFORMS.map((name) => `${name} : i32,`).join(' ') + ' eps : f32,';
  readonly params: LinearProgramParams;
  readonly numRowBlocks: number;
  /** Invocations of one batch entry (row blocks × blocks of NB rows of w). */
  readonly invocationsPerEntry: number;
  private readonly geometry: LinearGeometry;

  /** `outputShape`: the shape of the tensor written (a new one, or the target of an in-place write). */
  constructor(params: LinearProgramParams, geometry: LinearGeometry, outputShape: number[]) {
    const {m} = geometry;
    if (!Number.isInteger(m) || m < 1) throw new Error(`LinearProgram: M = ${m} is not ≥ 1`);
    this.params = params;
    this.geometry = geometry;
    const VW = params.vectorWidth;
    this.variableNames = ['x', 'w', ...(params.secondWeight ? ['w2'] : []),
                          ...(params.rmsNorm ? ['gamma'] : []),
                          ...(params.residual ? ['residual'] : []),
                          ...(params.ropeTail !== null ? ['freqsCis', 'tokenInfo'] : [])];
    // 16-bit weights are read as words: VW = 4 values are one vec2<i32>.
    const weightComponents = params.weightDtype === 'float32' ? VW : VW === 4 ? 2 : 1;
    this.variableComponents = this.variableNames.map((name) =>
        name === 'freqsCis' || name === 'tokenInfo' || name === 'residual' ? 1 :
        name === 'w' || name === 'w2' ? weightComponents : VW);
    this.numRowBlocks = Math.ceil(m / params.rowsPerInvocation);
    this.invocationsPerEntry = this.numRowBlocks * Math.ceil(geometry.n / params.colsPerInvocation);
    this.outputShape = outputShape;
    this.dispatchLayout = flatLayout(outputShape.length);
    this.workgroupSize = [params.workgroupSize, 1, 1];
    const invocations = geometry.numEntries * this.invocationsPerEntry + this.tailCount();
    this.dispatch = [Math.ceil(invocations / params.workgroupSize), 1, 1];
    this.shaderKey = linearShaderKey(params);
  }

  /** Invocations of the rope tail: one per (token, head, rope column). */
  private tailCount(): number {
    const tail = this.geometry.tail;
    return this.params.ropeTail === null || tail === null ? 0 :
        this.geometry.numEntries * this.geometry.m * tail.ropeDim;
  }

  /** The uniforms, in the order of `this.uniforms`. */
  uniformValues(): Array<{type: 'int32'|'float32', data: number[]}> {
    const g = this.geometry;
    const VW = this.params.vectorWidth;
    const values: Record<typeof UNIFORMS[number], number> = {
      kVecs: g.k / VW, numRows: g.m, numCols: g.n, splitCol: g.splitCol,
      numRowBlocks: this.numRowBlocks, perEntry: this.invocationsPerEntry,
      numEntries: g.numEntries, xEntryStride: g.xEntryStride / VW, xRowStride: g.xRowStride / VW,
      outEntryStride: g.outEntryStride, outRowStride: g.outRowStride, tailCount: this.tailCount(),
      tailSrcRowStride: g.tail?.srcRowStride ?? 0, tailSrcHeadStride: g.tail?.srcHeadStride ?? 0,
      tailSrcOffset: g.tail?.srcOffset ?? 0, tailDstOffset: g.tail?.dstOffset ?? 0,
    };
    return [...UNIFORMS.map((name) => ({type: 'int32' as const, data: [values[name]]})),
            {type: 'float32', data: [g.eps]}];
  }

  getUserCode(): string {
    const {rowsPerInvocation: MB, colsPerInvocation: NB, vectorWidth: VW, secondWeight, rmsNorm, residual,
           ropeTail} = this.params;
    const product = (a: string, b: string) => VW === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`;
    // Register k of a weight row, widened from 16 bits when stored so (VW = 4: one vec2 of
    // words; VW = 1: half of word (row start + k) / 2, the row start being in values).
    const half = this.params.weightDtype !== 'float32';
    const weightAt = (weight: string, i: string) => !half ? `${weight}[${i}]` : VW === 4 ?
        `vec4<f32>(unpackHalf2(${weight}[${i}].x), unpackHalf2(${weight}[${i}].y))` :
        `halfAt(${weight}[(${i}) / 2], ((${i}) & 1) == 1)`;
    const kLoop = (weight: string) => `
        for (var k = 0; k < kVecs; k++) {
          ${unroll(NB, (r) => `let wv${r} = ${weightAt(weight, `wRow${r} + k`)};`, '          ')}
          ${rmsNorm ? 'let g = gamma[k];' : ''}
          ${unroll(MB, (m) => [
            `let x${m} = x[xRow${m} + k];`,
            rmsNorm && `sumSquares${m} += ${product(`x${m}`, `x${m}`)};`,
            unroll(NB, (r) => `acc${m}_${r} += ${product(rmsNorm ? `(x${m} * g)` : `x${m}`, `wv${r}`)};`,
                   '          '),
          ], '          ')}
        }`;
    const wRows = (entryRows: string, firstRow: string, rowCount: string) => unroll(NB, (r) =>
        `let wRow${r} = (${entryRows} + min(${firstRow} + ${r}, ${rowCount} - 1)) * kVecs;`,
        '        ');
    const scalarOfX = (i: string) => VW === 4 ? `x[(${i}) / 4][(${i}) % 4]` : `x[${i}]`;
    const tail = ropeTail === null ? '' : `
      let tailIndex = index - linearInvocations;
      if (tailIndex >= uniforms.tailCount) {
        return;
      }
      let ropeDim = uniforms.freqsCisShape.y;
      let j = tailIndex % ropeDim;
      let tokenHead = tailIndex / ropeDim;
      let head = tokenHead % uniforms.numEntries;
      let token = tokenHead / uniforms.numEntries;
      ${ropePairWGSL(ropeTail.interleaved)}
      let src = token * uniforms.tailSrcRowStride + head * uniforms.tailSrcHeadStride +
          uniforms.tailSrcOffset + j;
      let freqsStart = tokenInfo[token * 3 + 1] * ropeDim;
      let c = freqsCis[freqsStart + 2 * pairIndex];
      let s = freqsCis[freqsStart + 2 * pairIndex + 1];
      let value = ${scalarOfX('src')};
      let partner = ${scalarOfX('src + partnerOffset')};
      result[token * uniforms.outRowStride + head * uniforms.outEntryStride +
             uniforms.tailDstOffset + j] = value * c + select(-partner, partner, isSecond) * s;`;
    return `${half ? halfWGSL(this.params.weightDtype as HalfDtype) : ''}
    ${mainHeader('index')} {
      let linearInvocations = uniforms.perEntry * uniforms.numEntries;
      if (index >= linearInvocations) {${tail}
        return;
      }
      let numRows = uniforms.numRows;
      let numCols = uniforms.numCols;
      let entry = index / uniforms.perEntry;
      let inEntry = index % uniforms.perEntry;
      let m0 = (inEntry % uniforms.numRowBlocks) * ${MB};
      let n0 = (inEntry / uniforms.numRowBlocks) * ${NB};
      if (n0 >= numCols) {
        return;
      }
      let kVecs = uniforms.kVecs;
      let xStart = entry * uniforms.xEntryStride;
      // Rows past M (the last row block) and past N are clamped: read, never written.
      ${unroll(MB, (m) => `let xRow${m} = xStart + min(m0 + ${m}, numRows - 1) * uniforms.xRowStride;`,
               '      ')}
      ${unroll(MB, (m) => [rmsNorm && `var sumSquares${m} = 0.0;`,
                           unroll(NB, (r) => `var acc${m}_${r} = 0.0;`, '      ')], '      ')}
      ${secondWeight ? `
      if (n0 >= uniforms.splitCol) {
        ${wRows('0', 'n0 - uniforms.splitCol', 'numCols - uniforms.splitCol')}
        ${kLoop('w2')}
      } else {
        ${wRows('0', 'n0', 'uniforms.splitCol')}
        ${kLoop('w')}
      }` : `
      {
        ${wRows('entry * numCols', 'n0', 'numCols')}
        ${kLoop('w')}
      }`}
      let outStart = entry * uniforms.outEntryStride + n0;
      ${unroll(MB, (m) => [
        rmsNorm && `let inverseRms${m} = 1.0 / sqrt(sumSquares${m} / f32(kVecs * ${VW}) + uniforms.eps);`,
        unroll(NB, (r) => `if (m0 + ${m} < numRows && n0 + ${r} < numCols) { ` +
            `let at${m}_${r} = outStart + (m0 + ${m}) * uniforms.outRowStride + ${r}; ` +
            `result[at${m}_${r}] = ${residual ? `residual[at${m}_${r}] + ` : ''}` +
            `acc${m}_${r}${rmsNorm ? ` * inverseRms${m}` : ''}; }`, '      '),
      ], '      ')}
    }`;
  }
}
