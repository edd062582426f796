/**
 * y = x · wᵀ (MLALinear): x [M, K], w [N, K] (HF [out, in] layout), y [M, N], for any M. The
 * program keeps every partial sum in registers and uses no workgroup memory and no barrier:
 *
 * - invocation i owns a block of MB rows of x (MB = M when M ≤ 8, else 8) and R consecutive
 *   rows of w, and walks K with vec4 loads (scalar loads when K % 4 ≠ 0): per step MB + R
 *   loads and MB·R dot products, unrolled into named registers (no private arrays);
 * - with several row blocks, consecutive invocations take consecutive row blocks of the same
 *   rows of w, so a workgroup reads its R rows of w once from memory for all of them;
 * - with a batch dim G (x [G, M, K], w [G, N, K]), entry g's invocations follow g − 1's: one
 *   dispatch for all G products (the layer's per-head W_UK / W_UV products: 2 dispatches
 *   a decode step instead of 2·H plus the slices and stacks around them).
 *
 * Measured on SwiftShader (2 cores, Node, W [3072, 2048]): for M = 1..3 this streams W at about
 * the read probe's rate (~17-20 ms), M = 8 in 52 ms (1.9 GFLOP/s) where tf.matMul takes
 * 717 ms; a variant that split K over a 64-invocation workgroup and reduced in workgroup
 * memory was 4-9× slower there. M = 512, K = 2048, N = 576 (`node bench/tune_linear.mjs --n 576`):
 * 1.84 GFLOP/s with R = 8 (1.61 with R = 4, 1.51 with 64 invocations per workgroup) where
 * tf.matMul runs at 0.18. R = 8 for M ≤ 2 and M > 8, else 4; 16 invocations per workgroup.
 * MB, R, the workgroup size and the vec4 flag are baked and in the shaderKey; K (in vectors),
 * M, N and the number of row blocks are uniforms.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

/** Rows of x one invocation multiplies (all of them up to this many). */
export const MAX_ROWS_PER_INVOCATION = 8;

export class LinearProgram implements WebGPUProgram {
  variableNames = ['x', 'w'];
  variableComponents: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size = true;
  uniforms = 'kVecs : i32, numRows : i32, numCols : i32, numRowBlocks : i32, perEntry : i32,';
  /** MB: rows of x per invocation. */
  readonly rowsPerInvocation: number;
  /** R: rows of w (outputs per x row) per invocation. */
  readonly colsPerInvocation: number;
  readonly numRowBlocks: number;
  /** Invocations of one batch entry (row blocks × blocks of R rows of w). */
  readonly invocationsPerEntry: number;

  /**
   * x [M, K], w [N, K] (`batch` null), or x [batch, M, K], w [batch, N, K]. Run with `linearUniforms(M, K, N, program)`. `colsPerInvocation` R
   * (default 8 for M ≤ 2 and M > 8, else 4) and `workgroupSize` are tuning knobs.
   */
  constructor(batch: number|null, m: number, k: number, n: number,
              colsPerInvocation = m <= 2 || m > MAX_ROWS_PER_INVOCATION ? 8 : 4,
              workgroupSize = 16) {
    if (!Number.isInteger(m) || m < 1) throw new Error(`LinearProgram: M = ${m} is not ≥ 1`);
    this.rowsPerInvocation = Math.min(m, MAX_ROWS_PER_INVOCATION);
    this.colsPerInvocation = colsPerInvocation;
    this.numRowBlocks = Math.ceil(m / this.rowsPerInvocation);
    const width = linearVectorWidth(k);
    this.variableComponents = [width, width];
    // The batch dim, when there is one, stays in the output even if it is 1.
    this.outputShape = batch === null ? [m, n] : [batch, m, n];
    this.dispatchLayout = flatLayout(this.outputShape.length);
    this.workgroupSize = [workgroupSize, 1, 1];
    this.invocationsPerEntry = this.numRowBlocks * Math.ceil(n / colsPerInvocation);
    const invocations = (batch ?? 1) * this.invocationsPerEntry;
    this.dispatch = [Math.ceil(invocations / workgroupSize), 1, 1];
    this.shaderKey = `mlaLinear_MB${this.rowsPerInvocation}_R${colsPerInvocation}_` +
        `WG${workgroupSize}_${width === 4 ? 'v4' : 's'}`;
  }

  getUserCode(): string {
    const MB = this.rowsPerInvocation;
    const R = this.colsPerInvocation;
    const vec4 = this.variableComponents[0] === 4;
    const product = (a: string, b: string) => vec4 ? `dot(${a}, ${b})` : `${a} * ${b}`;
    const rowDecls: string[] = [];
    const accDecls: string[] = [];
    const wLoads: string[] = [];
    const body: string[] = [];
    const writes: string[] = [];
    for (let r = 0; r < R; r++) {
      // Rows of w past N are clamped to N − 1: read, never written.
      rowDecls.push(`let wRow${r} = (wStart + min(n0 + ${r}, numCols - 1)) * kVecs;`);
      wLoads.push(`let w${r} = w[wRow${r} + k];`);
    }
    for (let m = 0; m < MB; m++) {
      // Rows of x past M (the last row block) likewise.
      rowDecls.push(`let xRow${m} = (xStart + min(m0 + ${m}, numRows - 1)) * kVecs;`);
      body.push(`let x${m} = x[xRow${m} + k];`);
      for (let r = 0; r < R; r++) {
        const acc = `acc${m}_${r}`;
        accDecls.push(`var ${acc} = 0.0;`);
        body.push(`${acc} += ${product(`x${m}`, `w${r}`)};`);
        writes.push(`if (m0 + ${m} < numRows && n0 + ${r} < numCols) { ` +
                    `result[(xStart + m0 + ${m}) * numCols + n0 + ${r}] = ${acc}; }`);
      }
    }
    return `
    ${mainHeader('index')} {
      let numRows = uniforms.numRows;
      let numCols = uniforms.numCols;
      let entry = index / uniforms.perEntry;
      let inEntry = index % uniforms.perEntry;
      let m0 = (inEntry % uniforms.numRowBlocks) * ${MB};
      let n0 = (inEntry / uniforms.numRowBlocks) * ${R};
      if (n0 >= numCols || entry * numRows * numCols >= uniforms.size) {
        return;
      }
      // Rows of this batch entry in x (and y) and in w.
      let xStart = entry * numRows;
      let wStart = entry * numCols;
      let kVecs = uniforms.kVecs;
      ${rowDecls.join('\n      ')}
      ${accDecls.join('\n      ')}
      for (var k = 0; k < kVecs; k++) {
        ${wLoads.join('\n        ')}
        ${body.join('\n        ')}
      }
      ${writes.join('\n      ')}
    }`;
  }
}

/** The vector width of the program's loads for an inner dim K: 4 when K % 4 = 0, else 1. */
export function linearVectorWidth(k: number): number {
  return k % 4 === 0 ? 4 : 1;
}

/** The uniforms of a LinearProgram for x [(G,) M, K], w [(G,) N, K]. */
export function linearUniforms(m: number, k: number, n: number, program: LinearProgram):
    Array<{type: 'int32', data: number[]}> {
  return [
    {type: 'int32', data: [k / linearVectorWidth(k)]},
    {type: 'int32', data: [m]},
    {type: 'int32', data: [n]},
    {type: 'int32', data: [program.numRowBlocks]},
    {type: 'int32', data: [program.invocationsPerEntry]},
  ];
}
