/**
 * WGSL of the rope pair of a column: shared by FusedRope's programs and MLALinear's rope tail,
 * so every program rotates exactly as the cpu reference (reference_math.ts ropeRow).
 */

/**
 * Given `j` (0 ≤ j < ropeDim) and `ropeDim` in scope, defines `pairIndex` (the frequency
 * index i), `isSecond` (whether j is the pair's second) and `partnerOffset` (partner − j):
 * pairs (2i, 2i+1) when interleaved, else (i, i + R/2). Rotated:
 * first = x·c − partner·s, second = partner·s + x·c.
 */
export function ropePairWGSL(interleaved: boolean): string {
  return interleaved ? `
      let pairIndex = j / 2;
      let isSecond = (j & 1) == 1;
      let partnerOffset = select(1, -1, isSecond);` :
                       `
      let halfDim = ropeDim / 2;
      let isSecond = j >= halfDim;
      let pairIndex = select(j, j - halfDim, isSecond);
      let partnerOffset = select(halfDim, -halfDim, isSecond);`;
}
