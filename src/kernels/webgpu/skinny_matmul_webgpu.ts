/**
 * y = x · wᵀ for few rows of x (MLASkinnyMatMul): x [M, K], w [N, K] (HF [out, in] layout),
 * y [M, N], with M ≤ MAX_SKINNY_ROWS. Such products are bound by reading w once (each element
 * is used M times), so the program streams w and keeps every partial sum in registers:
 *
 * - invocation i owns R consecutive rows of w (outputs n0 = i·R .. n0 + R of every x row) and
 *   walks K with vec4 loads (scalar loads when K % 4 ≠ 0), reading those R rows of w and the
 *   M rows of x (x is small and stays in the cache);
 * - the M·R dot products are unrolled into named registers (no private arrays), and each
 *   invocation writes its M·R outputs: no workgroup memory, no barrier.
 *
 * Measured on SwiftShader (2 cores, Node, W [3072, 2048]): this streams W at about the read
 * probe's rate for M = 1..3 (~17-20 ms); a variant that split K over a 64-invocation workgroup
 * and reduced in workgroup memory was 4-9× slower there. R = 8 for M ≤ 2, else 4; 16
 * invocations per workgroup (N/R/16 workgroups, 24 for q_proj at M = 1).
 * M, R, the workgroup size and the vec4 flag are baked and in the shaderKey; K (in vectors)
 * and N are uniforms.
 */
import {flatLayout, mainHeader, WebGPUProgram} from './webgpu_util.js';

/** The largest M the program takes (the layer falls back to tf.matMul above it). */
export const MAX_SKINNY_ROWS = 8;

export class SkinnyMatMulProgram implements WebGPUProgram {
  variableNames = ['x', 'w'];
  variableComponents: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = 'kVecs : i32, numCols : i32,';
  private readonly rows: number;
  private readonly rowsPerInvocation: number;

  /**
   * x [M, K], w [N, K]. Run with uniforms [{int32: K / skinnyVectorWidth(K)}, {int32: N}].
   * `rowsPerInvocation` R (default 8 for M ≤ 2, else 4) and `workgroupSize` are tuning knobs.
   */
  constructor(m: number, k: number, n: number, rowsPerInvocation = m <= 2 ? 8 : 4,
              workgroupSize = 16) {
    if (!Number.isInteger(m) || m < 1 || m > MAX_SKINNY_ROWS) {
      throw new Error(`SkinnyMatMulProgram: M = ${m} is not in [1, ${MAX_SKINNY_ROWS}]`);
    }
    this.rows = m;
    this.rowsPerInvocation = rowsPerInvocation;
    const width = skinnyVectorWidth(k);
    this.variableComponents = [width, width];
    this.outputShape = [m, n];
    this.dispatchLayout = flatLayout(2);
    this.workgroupSize = [workgroupSize, 1, 1];
    this.dispatch = [Math.ceil(Math.ceil(n / rowsPerInvocation) / workgroupSize), 1, 1];
    this.shaderKey = `mlaSkinnyMatMul_M${m}_R${rowsPerInvocation}_WG${workgroupSize}_` +
        (width === 4 ? 'v4' : 's');
  }

  getUserCode(): string {
    const M = this.rows;
    const R = this.rowsPerInvocation;
    const vec4 = this.variableComponents[0] === 4;
    const product = (a: string, b: string) => vec4 ? `dot(${a}, ${b})` : `${a} * ${b}`;
    const rowDecls: string[] = [];
    const accDecls: string[] = [];
    const wLoads: string[] = [];
    const body: string[] = [];
    const writes: string[] = [];
    for (let r = 0; r < R; r++) {
      // Rows of w past N are clamped to N − 1: read, never written.
      rowDecls.push(`let row${r} = min(n0 + ${r}, numCols - 1) * kVecs;`);
      wLoads.push(`let w${r} = w[row${r} + k];`);
    }
    for (let m = 0; m < M; m++) {
      body.push(`let x${m} = x[${m} * kVecs + k];`);
      for (let r = 0; r < R; r++) {
        const acc = `acc${m}_${r}`;
        accDecls.push(`var ${acc} = 0.0;`);
        body.push(`${acc} += ${product(`x${m}`, `w${r}`)};`);
        writes.push(`if (n0 + ${r} < numCols) { result[${m} * numCols + n0 + ${r}] = ${acc}; }`);
      }
    }
    return `
    ${mainHeader('index')} {
      let numCols = uniforms.numCols;
      let n0 = index * ${R};
      if (n0 >= numCols) {
        return;
      }
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
export function skinnyVectorWidth(k: number): number {
  return k % 4 === 0 ? 4 : 1;
}
