import {DeepseekYarnRotaryEmbedding, RotaryEmbedding, yarnGetMscale} from '../../src/index.js';

// Host-side rope math (scales, YaRN frequencies, argument checks). The rope tables against the
// golden vectors on every backend are in the browser lane (test/rope.spec.ts).

describe('rope scales', () => {
  const yarn = (mscale: number) => new DeepseekYarnRotaryEmbedding({
    dim: 64, nHeads: 16, theta: 10000, maxSeqLen: 8,
    scalingParams: {scalingFactor: 40, originalMaxPositionEmbeddings: 4096, betaFast: 32,
                    betaSlow: 1, mscale, mscaleAllDim: mscale}});

  it('computeScale gives the spec values for V3 and V2-Lite', () => {
    const base = 1 / Math.sqrt(192);
    expect(yarn(1.0).computeScale(base)).toBeCloseTo(0.1352337789, 9);
    expect(yarn(0.707).computeScale(base)).toBeCloseTo(0.1147213868, 9);
    expect(new RotaryEmbedding({dim: 64, nHeads: 16, theta: 10000, maxSeqLen: 8}).computeScale(base)).toBe(base);
  });

  it('YaRN inverse frequencies at DeepSeek-V3 settings match the research table', () => {
    const invFreq = yarn(1.0).inverseFrequencies();
    // low = 10, high = 23: extrapolated below, interpolated (÷40) above.
    expect(invFreq[0]).toBeCloseTo(1.0, 7);
    expect(invFreq[10]).toBeCloseTo(0.056234129, 7);
    expect(invFreq[11]).toBeCloseTo(0.039006926, 7);
    expect(invFreq[22]).toBeCloseTo(0.00017782794, 9);
    expect(invFreq[31]).toBeCloseTo(3.3338035e-06, 11);
    expect(yarn(1.0).magnitude()).toBe(1);
  });

  it('g(s, k) is 1 for s ≤ 1', () => {
    expect(yarnGetMscale(1, 0.707)).toBe(1);
    expect(yarnGetMscale(40, 1)).toBeCloseTo(1.368887945, 8);
  });

  it('rejects an odd dim and missing scaling params with the argument named', () => {
    expect(() => new RotaryEmbedding({dim: 7, nHeads: 1, theta: 10000, maxSeqLen: 4}))
        .toThrowError(/RotaryEmbedding dim: expected an even number, got 7/);
    expect(() => new DeepseekYarnRotaryEmbedding({dim: 8, nHeads: 1, theta: 10000, maxSeqLen: 4} as never))
        .toThrowError(/scalingParams/);
  });
});
