import {describeEachBackend, expectClose} from './helpers/backends.js';
import {GOLDEN_CASES, ropeOf} from './helpers/mla_fixtures.js';

describeEachBackend('rope tables', () => {
  for (const golden of GOLDEN_CASES) {
    it(`${golden.name}: freqsCis rows match the golden cos/sin (YaRN factor included)`, async () => {
      const rope = ropeOf(golden.config);
      const table = await rope.freqsCis.data();
      const R = golden.config.qkRopeHeadDim;
      expect(rope.freqsCis.shape).toEqual([golden.config.maxPositionEmbeddings, R]);
      const cos: number[] = [];
      const sin: number[] = [];
      for (const p of golden.rope.positions) {
        for (let i = 0; i < R / 2; i++) {
          cos.push(table[p * R + 2 * i]);
          sin.push(table[p * R + 2 * i + 1]);
        }
      }
      expectClose(cos, golden.rope.cos.data, 1e-6, 'cos');
      expectClose(sin, golden.rope.sin.data, 1e-6, 'sin');
      rope.dispose();
    });
  }
});
