import * as tf from '@tensorflow/tfjs-core';
import {MLAPrefillMetadata, planPrefillChunks, PrefillChunk, prefillChunks} from '../layers/prefill_metadata.js';

/** What a StepPlan reads of its KVCollection (kept narrow so the plan is easy to test). */
export interface StepSource {
  readonly numNewTokens: readonly number[];
  readonly cacheLengths: readonly number[];
  readonly pageSize: number;
  readonly maxPagesPerSeq: number;
  readonly batchSize: number;
  lookupValues(): Int32Array;
  slotOf(b: number, k: number): number;
}

/** The prefill chunks of one bufferSize with their device tensors. */
export interface PlannedPrefill {
  metadata: MLAPrefillMetadata;
  chunks: PrefillChunk[];
  /** Per chunk: the flat cache rows to gather [rows] and chunkInfo [B, 3]. */
  tensors: Array<{slots: tf.Tensor1D, chunkInfo: tf.Tensor2D}>;
}

/**
 * One step's plan, made once per step and shared by every layer of it (FlashMLA's scheduling
 * metadata): the host-side numbers (row offsets, per-token (b, position, slot), contexts) and,
 * on first use, their device tensors — tokenInfo, the page table and the prefill chunks. A
 * 30-layer model uploads them once a step, not 30 times. Owned by the KVCollection that
 * `cache.fetch` returned; disposed at `cache.step`, `rollback`, `release` or `dispose`.
 */
export class StepPlan {
  readonly numTokens: number;
  /** [B + 1]: sequence b owns rows [offsets[b], offsets[b+1]) of x. */
  readonly offsets: readonly number[];
  /** [T, 3] row-major: (batch row, absolute position, cache slot). */
  readonly tokenInfo: Int32Array;
  /** Context (cached + new) per batch row. */
  readonly contexts: readonly number[];
  readonly maxNewTokens: number;
  /** The longest context of the step. */
  readonly maxContextLength: number;
  private readonly source: StepSource;
  private tokenInfoTensor: tf.Tensor2D|null = null;
  private lookupTensor: tf.Tensor2D|null = null;
  private readonly prefills = new Map<number, PlannedPrefill>();
  private disposed = false;

  constructor(source: StepSource) {
    this.source = source;
    const offsets = [0];
    for (const count of source.numNewTokens) offsets.push(offsets[offsets.length - 1] + count);
    this.offsets = offsets;
    this.numTokens = offsets[offsets.length - 1];
    this.contexts = source.cacheLengths.map((c, b) => c + source.numNewTokens[b]);
    this.maxNewTokens = Math.max(0, ...source.numNewTokens);
    this.maxContextLength = Math.max(0, ...this.contexts);
    const tokenInfo = new Int32Array(this.numTokens * 3);
    source.numNewTokens.forEach((count, b) => {
      for (let i = 0; i < count; i++) {
        const position = source.cacheLengths[b] + i;
        tokenInfo.set([b, position, source.slotOf(b, position)], (offsets[b] + i) * 3);
      }
    });
    this.tokenInfo = tokenInfo;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** tokenInfo as an int32 [T, 3] tensor, uploaded once for the step. Owned by the plan. */
  tokenInfoTensor2d(): tf.Tensor2D {
    this.assertLive();
    if (this.tokenInfoTensor === null) {
      this.tokenInfoTensor = tf.keep(tf.tensor2d(this.tokenInfo, [this.numTokens, 3], 'int32'));
    }
    return this.tokenInfoTensor;
  }

  /** The page table as an int32 [B, maxPagesPerSeq] tensor (padded with page 0). Owned by the plan. */
  lookupTensor2d(): tf.Tensor2D {
    this.assertLive();
    if (this.lookupTensor === null) {
      this.lookupTensor = tf.keep(tf.tensor2d(this.source.lookupValues(),
                                              [this.source.batchSize, this.source.maxPagesPerSeq], 'int32'));
    }
    return this.lookupTensor;
  }

  /** MAX's prefill metadata of this step for buffers of `bufferSize` rows. */
  prefillMetadata(bufferSize: number): MLAPrefillMetadata {
    return planPrefillChunks(this.contexts, this.source.pageSize, bufferSize);
  }

  /** The prefill chunks for `bufferSize` and their tensors, made once per step. Owned by the plan. */
  prefill(bufferSize: number): PlannedPrefill {
    this.assertLive();
    let planned = this.prefills.get(bufferSize);
    if (planned === undefined) {
      const metadata = this.prefillMetadata(bufferSize);
      const chunks = prefillChunks(metadata, this.contexts, (b, k) => this.source.slotOf(b, k));
      const tensors = chunks.map((chunk) => ({
        slots: tf.keep(tf.tensor1d(chunk.slots, 'int32')),
        chunkInfo: tf.keep(tf.tensor2d(chunk.chunkInfo, [this.source.batchSize, 3], 'int32')),
      }));
      planned = {metadata, chunks, tensors};
      this.prefills.set(bufferSize, planned);
    }
    return planned;
  }

  /** Frees the device tensors. The host numbers stay readable. */
  dispose(): void {
    if (this.disposed) return;
    this.tokenInfoTensor?.dispose();
    this.lookupTensor?.dispose();
    for (const planned of this.prefills.values()) {
      planned.tensors.forEach(({slots, chunkInfo}) => {
        slots.dispose();
        chunkInfo.dispose();
      });
    }
    this.prefills.clear();
    this.tokenInfoTensor = null;
    this.lookupTensor = null;
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed) {
      throw new Error('kvCollection: its step is over (cache.step, rollback or release ran): ' +
                      'fetch again for the next step');
    }
  }
}

/** Whether two prefill metadata objects describe the same chunks. */
export function samePrefillMetadata(a: MLAPrefillMetadata, b: MLAPrefillMetadata): boolean {
  const sameRows = (x: number[][], y: number[][]) =>
      x.length === y.length && x.every((row, i) => row.length === y[i].length &&
                                                   row.every((v, j) => v === y[i][j]));
  return sameRows(a.bufferRowOffsets, b.bufferRowOffsets) && sameRows(a.cacheOffsets, b.cacheOffsets) &&
      a.bufferLengths.length === b.bufferLengths.length &&
      a.bufferLengths.every((v, i) => v === b.bufferLengths[i]);
}
