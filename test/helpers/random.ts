/**
 * mulberry32: uniform uint32s from a seed, so random cases repeat — the package's own generator
 * (the sampler of tfjs-mla/models). Shared by the browser specs (through seededRandom in
 * mla_fixtures.ts) and the Node lane.
 */
export {mulberry32 as randomUint32} from '../../src/models/sampling.js';
