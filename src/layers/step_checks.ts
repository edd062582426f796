/**
 * Host-side checks of a cached step, run before any dispatch (so every backend throws the
 * same Errors and nothing is half-written): the collection, the row offsets, the positions
 * against the rope table, and a given prefill metadata against the step.
 */
import * as tf from '@tensorflow/tfjs-core';
import {KVCollection} from '../cache/paged_kv_cache.js';
import {StepPlan} from '../cache/step_plan.js';
import type {RotaryEmbedding} from '../rope/rotary_embedding.js';
import {MLAPrefillMetadata} from './prefill_metadata.js';
import {showShape} from './weights.js';

/** The collection is live, fetched for rows of `rowWidth`, and still describes its cache. */
export function checkCollection(collection: KVCollection, rowWidth: number): void {
  if (!(collection instanceof KVCollection)) {
    throw new Error(`kvCollection: expected the KVCollection returned by cache.fetch, got ${typeof collection}`);
  }
  if (collection.cache.isDisposed) throw new Error('kvCollection: its cache has been disposed');
  if (collection.params.rowWidth !== rowWidth) {
    throw new Error(`kvCollection: expected cache rows of kvLoraRank + qkRopeHeadDim = ${rowWidth}, ` +
                    `got headDim ${collection.params.rowWidth}`);
  }
  if (collection.isStepOver) {
    throw new Error('kvCollection: its step is over (cache.step, rollback or release ran): ' +
                    'fetch again for the next step');
  }
  collection.seqIds.forEach((seqId, b) => {
    if (!collection.cache.contains(seqId)) {
      throw new Error(`kvCollection seqIds[${b}]: sequence ${seqId} is not claimed (released?)`);
    }
    const committed = collection.cache.cacheLength(seqId);
    if (committed !== collection.cacheLengths[b]) {
      throw new Error(`kvCollection: stale for sequence ${seqId}: fetched at length ` +
                      `${collection.cacheLengths[b]}, the cache now has ${committed} tokens ` +
                      `(fetch again after each step)`);
    }
    const pages = collection.cache.pagesOf(seqId);
    if (!collection.lookupTable[b].every((page, i) => pages[i] === page)) {
      throw new Error(`kvCollection: stale for sequence ${seqId}: its pages changed since the ` +
                      `fetch (rolled back after a failed step?); fetch again`);
    }
  });
}

/**
 * The offsets must be the collection's: [0, n_0, n_0 + n_1, …]. A number[] is checked entry by
 * entry; a Tensor1D only by shape (reading its values would be a GPU read-back on webgpu), on
 * every backend alike; the collection's counts are the offsets either way.
 */
export function checkOffsets(inputRowOffsets: tf.Tensor1D|number[], plan: StepPlan,
                             collection: KVCollection, numTokens: number|null): void {
  const expectedLength = collection.batchSize + 1;
  if (inputRowOffsets instanceof tf.Tensor) {
    if (inputRowOffsets.rank !== 1 || inputRowOffsets.shape[0] !== expectedLength) {
      throw new Error(`inputRowOffsets: expected shape [${expectedLength}] (batch + 1), got ` +
                      `${showShape(inputRowOffsets.shape)}`);
    }
    if (inputRowOffsets.dtype !== 'int32') {
      throw new Error(`inputRowOffsets: expected an int32 Tensor1D, got ${inputRowOffsets.dtype}`);
    }
  } else if (Array.isArray(inputRowOffsets)) {
    const offsets = inputRowOffsets;
    if (offsets.length !== expectedLength) {
      throw new Error(`inputRowOffsets: expected ${expectedLength} entries (batch of ` +
                      `${collection.batchSize} + 1), got ${offsets.length}`);
    }
    if (offsets[0] !== 0) throw new Error(`inputRowOffsets[0]: expected 0, got ${offsets[0]}`);
    for (let b = 0; b < collection.batchSize; b++) {
      const count = offsets[b + 1] - offsets[b];
      if (!Number.isInteger(offsets[b + 1]) || count < 0) {
        throw new Error(`inputRowOffsets[${b + 1}]: expected an integer ≥ inputRowOffsets[${b}] = ` +
                        `${offsets[b]}, got ${offsets[b + 1]}`);
      }
      if (count !== collection.numNewTokens[b]) {
        throw new Error(`inputRowOffsets: sequence ${collection.seqIds[b]} (batch row ${b}) has ` +
                        `${count} rows, but kvCollection was fetched with numNewTokens ` +
                        `${collection.numNewTokens[b]}`);
      }
    }
  } else {
    throw new Error(`inputRowOffsets: expected a number[] or an int32 Tensor1D, got ${typeof inputRowOffsets}`);
  }
  if (numTokens !== null && plan.numTokens !== numTokens) {
    throw new Error(`inputRowOffsets[${collection.batchSize}]: expected T = ${numTokens} (rows of x), ` +
                    `got ${plan.numTokens} (the collection's new tokens)`);
  }
}

/** Every new token's position lies in the rope table, and its pages were reserved. */
export function checkPositions(collection: KVCollection, rope: RotaryEmbedding): void {
  collection.seqIds.forEach((seqId, b) => {
    const count = collection.numNewTokens[b];
    const cached = collection.cacheLengths[b];
    if (cached + count > rope.maxSeqLen) {
      throw new Error(`forward: sequence ${seqId} would reach position ${cached + count - 1}, past ` +
                      `the rope's maxSeqLen ${rope.maxSeqLen}`);
    }
    if (Math.ceil((cached + count) / collection.pageSize) > collection.lookupTable[b].length) {
      throw new Error(`kvCollection: sequence ${seqId} has no pages reserved for its ${count} new ` +
                      `tokens (fetch them with cache.fetch)`);
    }
  });
}

/**
 * A given prefill metadata must describe this step: the chunks of [chunks, B + 1] cover every
 * sequence's (page-aligned) context exactly once, in order, within `bufferSize` rows. One made
 * for an earlier step (shorter contexts) or another batch is refused.
 */
export function checkPrefillMetadata(metadata: MLAPrefillMetadata, plan: StepPlan,
                                     collection: KVCollection, bufferSize: number): void {
  const width = collection.batchSize + 1;
  const rows = metadata?.bufferLengths?.length;
  const ok = Array.isArray(metadata?.bufferRowOffsets) && Array.isArray(metadata?.cacheOffsets) &&
      metadata.bufferRowOffsets.length === rows && metadata.cacheOffsets.length === rows &&
      metadata.bufferRowOffsets.every((r) => r.length === width) &&
      metadata.cacheOffsets.every((r) => r.length === width);
  if (!ok) {
    throw new Error(`prefillMetadata: expected bufferRowOffsets and cacheOffsets of [chunks, ${width}] ` +
                    `and bufferLengths of [chunks] (from createMlaPrefillMetadata for this step)`);
  }
  if (metadata.bufferLengths.some((length) => length > bufferSize)) {
    throw new Error(`prefillMetadata bufferLengths: expected ≤ bufferSize ${bufferSize}, got ` +
                    `[${metadata.bufferLengths.join(', ')}]`);
  }
  const pageSize = collection.pageSize;
  for (let b = 0; b < collection.batchSize; b++) {
    const aligned = Math.ceil(plan.contexts[b] / pageSize) * pageSize;
    let covered = 0;
    metadata.bufferLengths.forEach((_, c) => {
      const rowsOfB = metadata.bufferRowOffsets[c][b + 1] - metadata.bufferRowOffsets[c][b];
      if (rowsOfB > 0 && metadata.cacheOffsets[c][b] !== covered) covered = -Infinity;
      covered += Math.max(0, rowsOfB);
    });
    if (covered !== aligned) {
      throw new Error(`prefillMetadata: does not describe this step: sequence ` +
                      `${collection.seqIds[b]} (batch row ${b}) has a context of ${plan.contexts[b]} ` +
                      `tokens (${aligned} rows in pages of ${pageSize}), the metadata covers ` +
                      `${Number.isFinite(covered) ? covered : 'rows out of order'} ` +
                      `(made for another step? call createMlaPrefillMetadata for each step)`);
    }
  }
}
