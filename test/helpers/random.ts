/**
 * mulberry32: uniform uint32s from a seed, so random cases repeat. Shared by the browser specs
 * (through seededRandom in mla_fixtures.ts) and the Node lane; imports nothing.
 */
export function randomUint32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
