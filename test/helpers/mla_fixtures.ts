import * as tf from '@tensorflow/tfjs-core';
import {DeepseekYarnRotaryEmbedding, KVCacheParams, LatentAttentionWithRope, LatentAttentionWithRopeArgs, PagedKVCache, RotaryEmbedding} from '../../src/index.js';
import {expectClose, goldenTolerance} from './backends.js';
import smallRagged from '../fixtures/small_ragged.json';
import tinyPlain from '../fixtures/tiny_plain.json';
import tinyYarnQlora from '../fixtures/tiny_yarn_qlora.json';
import {randomUint32} from './random.js';

export interface GoldenArray {
  shape: number[];
  data: number[];
}

export interface GoldenConfig {
  hiddenSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  qLoraRank: number|null;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  scale: number|null;
  ropeScaling: null|{
    type: string, factor: number, originalMaxPositionEmbeddings: number, betaFast: number,
    betaSlow: number, mscale: number, mscaleAllDim: number,
  };
}

export interface GoldenStep {
  seqIds: number[];
  inputRowOffsets: number[];
  cacheLengthsBefore: number[];
  x: GoldenArray;
  y: GoldenArray;
}

export interface GoldenCase {
  name: string;
  config: GoldenConfig;
  softmaxScale: number;
  weights: Record<string, GoldenArray>;
  steps: GoldenStep[];
  rope: {positions: number[], cos: GoldenArray, sin: GoldenArray};
  finalCache: Record<string, {latent: GoldenArray, kRope: GoldenArray}>;
}

/** The float64 oracle's vectors (copied from shared/golden into test/fixtures). */
export const GOLDEN_CASES: GoldenCase[] = [
  {name: 'tiny_plain', ...(tinyPlain as unknown as Omit<GoldenCase, 'name'>)},
  {name: 'tiny_yarn_qlora', ...(tinyYarnQlora as unknown as Omit<GoldenCase, 'name'>)},
  {name: 'small_ragged', ...(smallRagged as unknown as Omit<GoldenCase, 'name'>)},
];

/** The rope of a golden config. */
export function ropeOf(config: GoldenConfig): RotaryEmbedding {
  const common = {dim: config.qkRopeHeadDim, nHeads: config.numAttentionHeads,
                  theta: config.ropeTheta, maxSeqLen: config.maxPositionEmbeddings};
  const s = config.ropeScaling;
  if (s === null) return new RotaryEmbedding(common);
  return new DeepseekYarnRotaryEmbedding({...common, scalingParams: {
    scalingFactor: s.factor, originalMaxPositionEmbeddings: s.originalMaxPositionEmbeddings,
    betaFast: s.betaFast, betaSlow: s.betaSlow, mscale: s.mscale, mscaleAllDim: s.mscaleAllDim,
  }});
}

/** Layer arguments for a golden config (the caller may override page size, mode, …). */
export function layerArgsOf(config: GoldenConfig, rope: RotaryEmbedding, pageSize: number,
                            overrides: Partial<LatentAttentionWithRopeArgs> = {}): LatentAttentionWithRopeArgs {
  return {
    rope,
    numAttentionHeads: config.numAttentionHeads,
    numKeyValueHeads: config.numKeyValueHeads,
    hiddenSize: config.hiddenSize,
    kvParams: new KVCacheParams({headDim: config.kvLoraRank + config.qkRopeHeadDim, pageSize}),
    scale: config.scale,
    qLoraRank: config.qLoraRank,
    kvLoraRank: config.kvLoraRank,
    qkNopeHeadDim: config.qkNopeHeadDim,
    qkRopeHeadDim: config.qkRopeHeadDim,
    vHeadDim: config.vHeadDim,
    rmsNormEps: config.rmsNormEps,
    ...overrides,
  };
}

/** Tensors of a golden weight set (the caller disposes them). */
export function weightsOf(golden: GoldenCase): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [name, w] of Object.entries(golden.weights)) out[name] = tf.tensor(w.data, w.shape);
  return out;
}

/** A layer with the golden weights loaded. */
export function goldenLayer(golden: GoldenCase, rope: RotaryEmbedding, pageSize: number,
                            overrides: Partial<LatentAttentionWithRopeArgs> = {}): LatentAttentionWithRope {
  const layer = new LatentAttentionWithRope(layerArgsOf(golden.config, rope, pageSize, overrides));
  const weights = weightsOf(golden);
  layer.loadStateDict(weights);
  Object.values(weights).forEach((w) => w.dispose());
  return layer;
}

/** Seeded uniform numbers in [−scale, scale) (mulberry32), so random cases repeat. */
export function seededRandom(seed: number): (scale?: number) => number {
  const next = randomUint32(seed);
  return (scale = 1) => (2 * (next() / 4294967296) - 1) * scale;
}

/** A random tensor of `shape` from `random`. */
export function randomTensor(random: (scale?: number) => number, shape: number[], scale = 1): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Array.from({length: size}, () => random(scale)), shape);
}

/** Random HF weights for a layer's configuration (scaled like MAX's tests so scores stay O(1)). */
export function randomWeights(layer: LatentAttentionWithRope, seed: number): Record<string, tf.Tensor> {
  const random = seededRandom(seed);
  const out: Record<string, tf.Tensor> = {};
  for (const [name, shape] of layer.expectedWeightShapes()) {
    out[name] = tf.tidy(() => name.endsWith('layernorm.weight') ?
        tf.add(1, randomTensor(random, shape, 0.2)) :
        randomTensor(random, shape, 1 / Math.sqrt(shape[shape.length - 1])));
  }
  return out;
}

/** Loads seeded random weights into `layer`. */
export function loadRandomWeights(layer: LatentAttentionWithRope, seed: number): void {
  const weights = randomWeights(layer, seed);
  layer.loadStateDict(weights);
  Object.values(weights).forEach((w) => w.dispose());
}

/**
 * Runs every golden step through the public API (claim at first use, fetch, forward, step)
 * and checks each output against the oracle within relativeBound·max(1, max|y|) (1e-4 unless
 * the storage is reduced).
 */
export async function expectGoldenSteps(layer: LatentAttentionWithRope, golden: GoldenCase,
                                        cache: PagedKVCache, relativeBound = 1e-4): Promise<void> {
  for (const [i, step] of golden.steps.entries()) {
    for (const seqId of step.seqIds) if (!cache.contains(seqId)) cache.claim(seqId);
    expect(step.seqIds.map((id) => cache.cacheLength(id))).toEqual(step.cacheLengthsBefore);
    const counts = step.seqIds.map((_, b) => step.inputRowOffsets[b + 1] - step.inputRowOffsets[b]);
    const collection = cache.fetch(step.seqIds, counts);
    const x = tf.tensor2d(step.x.data, step.x.shape as [number, number]);
    const y = layer.forward(x, {kvCollection: collection, inputRowOffsets: step.inputRowOffsets});
    cache.step(step.seqIds, counts);
    expect(y.shape).toEqual(step.y.shape);
    expectClose(await y.data(), step.y.data, goldenTolerance(step.y.data) * relativeBound / 1e-4,
                `${golden.name} step ${i} y`);
    x.dispose();
    y.dispose();
  }
}
